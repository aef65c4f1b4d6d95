package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/azurestore"
)

// TestCLIMasksEngineErrors: a store whose client echoes its credential (as
// an URL parse error does for a SAS token with a line break) reaches the
// user's terminal, and the command's error, masked, with its kind kept.
func TestCLIMasksEngineErrors(t *testing.T) {
	sas := "sv=2022-11-02&ss=b&srt=sco&sp=rl&sig=ab%2Bcd%3DsIgNaTuRe\n"
	echo := func(store.Secrets, string) (store.Store, error) {
		_, err := url.Parse("https://acct.blob.core.windows.net/?" + sas)
		return nil, fmt.Errorf("%w: Azure client: %v", fault.Invalid, err)
	}
	marker, err := bucket.NewMarker(bucket.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	e := &Env{
		Ownership: bucket.NewKeeper(marker, bucket.NewJournal()),
		Stores:    store.Registry{"azure": {Open: echo, SecretKeys: []string{azurestore.SecretSASToken}}},
		Secrets:   map[string]store.Secrets{"azure": {azurestore.SecretSASToken: sas}},
		Out:       &out, Err: &errOut, DefaultStore: "azure",
	}
	red := e.Redact()
	if err := e.Ls(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	_, uerr := e.Upload(context.Background(), "data", "azure", []string{t.TempDir()}, "test")
	final := red.Error(uerr)
	if !errors.Is(final, fault.Invalid) {
		t.Fatalf("upload error lost its kind: %v", final)
	}
	all := out.String() + errOut.String() + final.Error()
	if !strings.Contains(errOut.String(), "warning: store azure:") || !strings.Contains(all, "[REDACTED]") {
		t.Fatalf("expected a masked warning, got %q", all)
	}
	for _, leak := range []string{"sIgNaTuRe", "ab%2Bcd", "ab+cd="} {
		if strings.Contains(all, leak) {
			t.Errorf("%q reaches the CLI's output: %q", leak, all)
		}
	}
}
