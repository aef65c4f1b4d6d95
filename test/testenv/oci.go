package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/bucket-csi/bucket-csi/internal/ocistandin"
	"github.com/bucket-csi/bucket-csi/pkg/store/ocistore"
)

// OCI is the OCI Object Storage stand-in with a signing key for it.
type OCI struct {
	*ocistandin.Server
	Config  ocistore.Config
	secrets map[string]string
}

// StartOCI starts the stand-in (see internal/ocistandin: there is no OCI
// emulator) with a freshly generated API signing key.
func StartOCI(t testing.TB) *OCI {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	tenancy, user, fp := "ocid1.tenancy.oc1..standin", "ocid1.user.oc1..standin", "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"
	srv := ocistandin.Start("standinns", tenancy+"/"+user+"/"+fp)
	t.Cleanup(srv.Close)
	return &OCI{Server: srv,
		Config: ocistore.Config{Region: "us-ashburn-1", Compartment: "ocid1.compartment.oc1..standin", Endpoint: srv.URL},
		secrets: map[string]string{ocistore.SecretTenancy: tenancy, ocistore.SecretUser: user,
			ocistore.SecretFingerprint: fp, ocistore.SecretPrivateKey: pemKey}}
}

// Secrets returns the CSI secret with the signing key.
func (o *OCI) Secrets() map[string]string { return o.secrets }

// WrongSecrets returns a key of another user.
func (o *OCI) WrongSecrets() map[string]string {
	w := map[string]string{}
	for k, v := range o.secrets {
		w[k] = v
	}
	w[ocistore.SecretUser] = "ocid1.user.oc1..someoneelse"
	return w
}

// Args point the driver at the stand-in.
func (o *OCI) Args() []string {
	return []string{"--oci-endpoint", o.URL, "--oci-region", o.Config.Region, "--oci-compartment", o.Config.Compartment}
}
