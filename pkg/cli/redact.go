package cli

import (
	"github.com/bucket-csi/bucket-csi/pkg/redact"
)

// Redact makes the CLI's output boundary mask every credential of e.Secrets
// (all stores): e.Out and e.Err are replaced by masking writers, and the
// returned Redactor is for the caller to mask the command's final error
// and the engine's (rclone's) log, which this package does not own. Call
// it once, after Secrets, Out and Err are set.
func (e *Env) Redact() *redact.Redactor {
	var vals []string
	for _, s := range e.Secrets {
		vals = append(vals, redact.Values(s)...)
	}
	red := redact.New(vals...)
	e.Out, e.Err = red.Writer(e.Out), red.Writer(e.Err)
	return red
}
