// Package logging builds the slog loggers of the driver and its FUSE
// servers from the --log-format and --log-level flags, so both processes
// write one format: "text" (logfmt-style key=value, the default) or
// "json" (one object per line, for log collectors).
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// Formats are the accepted --log-format values.
const (
	Text = "text"
	JSON = "json"
)

// New returns a logger writing to w in format ("" is text) at level
// ("" is info: debug, info, warn or error).
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("log level %q: %w", level, err)
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case Text, "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case JSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want %s or %s", format, Text, JSON)
	}
}
