package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/azurestore"
	"github.com/bucket-csi/bucket-csi/pkg/store/gcsstore"
	"github.com/bucket-csi/bucket-csi/pkg/store/ocistore"
	"github.com/bucket-csi/bucket-csi/pkg/store/s3store"
)

// storeFlags are the per-store settings.
type storeFlags struct {
	kinds                string
	s3, r2, ibm, nebius  s3store.Config
	r2Account, ibmRegion string
	gcs                  gcsstore.Config
	azure                azurestore.Config
	oci                  ocistore.Config
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.kinds, "stores", "", "stores this driver serves, comma-separated (default: s3, gcs, azure, ibm, nebius, oci, and r2 when --r2-account-id or --r2-endpoint is set)")
	fs.StringVar(&f.s3.Endpoint, "s3-endpoint", "", "S3 endpoint URL (empty: AWS)")
	fs.StringVar(&f.s3.Region, "s3-region", "", "S3 region (default us-east-1)")
	fs.BoolVar(&f.s3.PathStyle, "s3-path-style", false, "use path-style S3 addressing")
	fs.StringVar(&f.s3.RcloneProvider, "s3-provider", "", "rclone s3 provider name (default AWS, or Other with an endpoint)")
	fs.StringVar(&f.gcs.ProjectID, "gcs-project", "", "GCS project that owns buckets the driver creates")
	fs.StringVar(&f.gcs.Endpoint, "gcs-endpoint", "", "GCS JSON API endpoint (an emulator: http://host:port/storage/v1/)")
	fs.StringVar(&f.azure.Account, "azure-account", "", "Azure storage account for containers the driver creates")
	fs.StringVar(&f.azure.Endpoint, "azure-endpoint", "", "Azure account URL template with {account} (default https://{account}.blob.core.windows.net/)")
	fs.StringVar(&f.r2Account, "r2-account-id", "", "Cloudflare account ID (R2 endpoint https://<id>.r2.cloudflarestorage.com)")
	fs.StringVar(&f.r2.Endpoint, "r2-endpoint", "", "R2 endpoint override")
	fs.StringVar(&f.ibmRegion, "ibm-region", "us-east", "IBM COS region for buckets the driver creates")
	fs.StringVar(&f.ibm.Endpoint, "ibm-endpoint", "https://s3.{location}.cloud-object-storage.appdomain.cloud", "IBM COS endpoint template ({location} is the region)")
	fs.StringVar(&f.oci.Region, "oci-region", "", "OCI region for buckets the driver creates (oci:// URIs may name another)")
	fs.StringVar(&f.oci.Compartment, "oci-compartment", "", "OCI compartment OCID for buckets the driver creates and lists")
	fs.StringVar(&f.oci.Namespace, "oci-namespace", "", "OCI Object Storage namespace (default: looked up)")
	fs.StringVar(&f.oci.Endpoint, "oci-endpoint", "", "OCI Object Storage endpoint override ({region} is replaced)")
	fs.StringVar(&f.nebius.Region, "nebius-region", "eu-north1", "Nebius region")
	fs.StringVar(&f.nebius.Endpoint, "nebius-endpoint", "", "Nebius endpoint override (default https://storage.<region>.nebius.cloud)")
}

// registry builds the configured stores. Static keys in the driver's
// environment are S3-style and serve every S3-compatible profile.
func (f *storeFlags) registry() (store.Registry, error) {
	ambient := s3store.Keys{
		AccessKeyID:     os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken:    os.Getenv("AWS_SESSION_TOKEN"),
	}
	s3 := f.s3
	s3.Ambient = ambient
	r2 := f.r2
	if r2.Endpoint == "" && f.r2Account != "" {
		r2.Endpoint = "https://" + f.r2Account + ".r2.cloudflarestorage.com"
	}
	r2.Region, r2.RcloneProvider, r2.PathStyle, r2.Ambient = "auto", "Cloudflare", true, ambient
	ibm := f.ibm
	ibm.RcloneProvider, ibm.PathStyle, ibm.Ambient = "IBMCOS", true, ambient
	nebius := f.nebius
	if nebius.Endpoint == "" {
		nebius.Endpoint = "https://storage." + nebius.Region + ".nebius.cloud"
	}
	nebius.RcloneProvider, nebius.PathStyle, nebius.Ambient = "Other", true, ambient
	ibmBackend := s3store.Backend(ibm)
	ibmBackend.DefaultLocation = f.ibmRegion
	all := store.Registry{
		"s3": s3store.Backend(s3), "r2": s3store.Backend(r2), "ibm": ibmBackend, "nebius": s3store.Backend(nebius),
		"gcs": gcsstore.Backend(f.gcs), "azure": azurestore.Backend(f.azure), "oci": ocistore.Backend(f.oci),
	}
	kinds := f.kinds
	if kinds == "" {
		kinds = "s3,gcs,azure,ibm,nebius,oci"
		if r2.Endpoint != "" {
			kinds += ",r2"
		}
	}
	out := store.Registry{}
	for _, kind := range strings.Split(kinds, ",") {
		kind = strings.TrimSpace(kind)
		b, ok := all[kind]
		if !ok {
			return nil, fmt.Errorf("--stores: %q is not one of %s", kind, strings.Join(all.Kinds(), ", "))
		}
		if kind == "r2" && r2.Endpoint == "" {
			return nil, fmt.Errorf("--stores includes r2: set --r2-account-id (or --r2-endpoint)")
		}
		out[kind] = b
	}
	return out, nil
}
