package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	rfs "github.com/rclone/rclone/fs"

	"github.com/bucket-csi/bucket-csi/pkg/cli"
	"github.com/bucket-csi/bucket-csi/pkg/kube"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/stores"
)

const storageUsage = `usage: bucket-csi storage COMMAND [flags]

Commands:
  ls [-o json]                            list the buckets bucket-csi created
  delete NAME... | --all [-y] [--force]   delete buckets bucket-csi created, with their objects
  remark NAME... [--store STORE] [-y]     show what each bucket holds and, once confirmed, mark it as
                                          bucket-csi's (buckets with an earlier version's or a forged mark,
                                          or left unmarked by a crash)
  upload --name NAME [--store STORE] PATH...
                                          create or reuse a bucket and upload only new or changed files:
                                          one directory's contents to its root; of several paths, each
                                          under its own name

Every command needs the driver's ownership key: --ownership-key-file FILE (in a cluster, the chart's
Secret: kubectl -n bucket-csi get secret bucket-csi-ownership-key -o jsonpath='{.data.ownership\.key}' | base64 -d).
Only marks signed with it count: other buckets are never listed as bucket-csi's nor deleted.

Credentials: --secrets FILE (JSON: {"s3": {"accessKeyID": ..., "secretAccessKey": ...}, "gcs": {...}},
the same keys as the driver's CSI secrets; the file must not be readable by others), else the
environment's identity (AWS_ACCESS_KEY_ID..., GOOGLE_APPLICATION_CREDENTIALS, Azure and OCI defaults).
Store flags are the driver's (--s3-endpoint, --gcs-project, --azure-account, ...). --config FILE
(JSON: {"s3-endpoint": "...", "secrets": "/path", ...}) sets any flag; the command line wins.
With --kubeconfig (or $KUBECONFIG, or in a pod) ls and delete also check which PersistentVolumes
reference each bucket.
`

// storageMain runs `bucket-csi storage ...`.
func storageMain(args []string) (err error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(storageUsage)
		return nil
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("bucket-csi storage "+cmd, flag.ContinueOnError)
	registry := stores.Flags(fs)
	secretsFile := fs.String("secrets", "", "JSON file with credentials per store")
	defaultStore := fs.String("default-store", "s3", "store used when --store is not given")
	output := fs.String("o", "table", "ls output: table or json")
	all := fs.Bool("all", false, "delete: every bucket bucket-csi created (asks first)")
	yes := fs.Bool("y", false, "delete, remark: do not ask for confirmation")
	force := fs.Bool("force", false, "delete: even when volumes still use the bucket")
	name := fs.String("name", "", "upload: the bucket")
	kind := fs.String("store", "", "upload, remark: the store (default --default-store)")
	keyFile := fs.String("ownership-key-file", "", "file holding the driver's ownership key")
	configFile := fs.String("config", "", "JSON file setting any of these flags (the command line wins)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for checking which PersistentVolumes use a bucket (default $KUBECONFIG, or in-cluster)")
	fs.Usage = func() { commandUsage(fs, cmd) }
	if err := fs.Parse(reorder(fs, args)); err != nil {
		return err
	}
	if err := applyConfig(fs, *configFile); err != nil {
		return err
	}
	reg, err := registry(os.Getenv)
	if err != nil {
		return err
	}
	env := &cli.Env{Stores: reg, Kinds: stores.Catalog(), DefaultStore: *defaultStore, Out: os.Stdout, Err: os.Stderr,
		Terminal: cli.IsTerminal(os.Stdout), Now: time.Now}
	if cli.IsTerminal(os.Stdin) {
		env.In = os.Stdin
	}
	if env.Secrets, err = readSecrets(*secretsFile); err != nil {
		return err
	}
	if env.Ownership, err = loadKeeper(*keyFile); err != nil {
		return err
	}
	// Everything the CLI prints, rclone's log and the final error
	// included, has the credentials masked.
	red := env.Redact()
	rfs.SetLogger(slog.NewTextHandler(red.Writer(os.Stderr), &slog.HandlerOptions{Level: slog.LevelWarn}))
	defer func() { err = red.Error(err) }()
	if cmd == "ls" || cmd == "delete" {
		kc := cmp.Or(*kubeconfig, os.Getenv("KUBECONFIG"))
		if env.PVs, err = kube.NewPVLister(kc, os.Getenv("KUBERNETES_SERVICE_HOST") != ""); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "ls":
		return env.Ls(ctx, *output == "json")
	case "delete":
		return env.Delete(ctx, fs.Args(), *all, *yes, *force)
	case "remark":
		return env.Remark(ctx, fs.Args(), *kind, *yes)
	case "upload":
		if *name == "" {
			return errors.New("upload needs --name")
		}
		_, err := env.Upload(ctx, *name, *kind, fs.Args(), "bucket-csi storage upload "+strings.Join(args, " "))
		return err
	}
	return fmt.Errorf("unknown storage command %q\n%s", cmd, storageUsage)
}

// reorder moves flags before positional arguments, so `delete a b -y`
// works like `delete -y a b`. A flag of fs that is not boolean takes the
// next argument as its value.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-"):
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && takesValue(fs, a) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}

// takesValue reports whether the flag arg (a "-name" argument) of fs
// takes a value: every flag but the boolean ones.
func takesValue(fs *flag.FlagSet, arg string) bool {
	f := fs.Lookup(strings.TrimLeft(arg, "-"))
	if f == nil {
		return true
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// commandFlags returns the flags only some storage commands use, with
// those commands; every other flag (the store flags, credentials, key,
// config) serves them all.
func commandFlags() map[string][]string {
	return map[string][]string{
		"o": {"ls"}, "kubeconfig": {"ls", "delete"},
		"all": {"delete"}, "force": {"delete"}, "y": {"delete", "remark"},
		"store": {"remark", "upload"}, "default-store": {"remark", "upload"}, "name": {"upload"},
	}
}

// commandUsage prints the usage of `storage cmd`: the flags cmd uses.
func commandUsage(fs *flag.FlagSet, cmd string) {
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	some := commandFlags()
	fs.VisitAll(func(f *flag.Flag) {
		if cmds, only := some[f.Name]; !only || slices.Contains(cmds, cmd) {
			shown.Var(f.Value, f.Name, f.Usage)
		}
	})
	shown.SetOutput(fs.Output())
	fmt.Fprintf(fs.Output(), "usage of %s:\n", fs.Name())
	shown.PrintDefaults()
}

// applyConfig sets, from a JSON object of flag names to values, every flag
// the command line did not set.
func applyConfig(fs *flag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var values map[string]any
	if err := json.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("--config %s: %v", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range values {
		if fs.Lookup(name) == nil {
			return fmt.Errorf("--config %s: unknown setting %q", path, name)
		}
		if !set[name] {
			if err := fs.Set(name, fmt.Sprint(v)); err != nil {
				return fmt.Errorf("--config %s: %s: %v", path, name, err)
			}
		}
	}
	return nil
}

// readSecrets loads the per-store credentials file, refusing one that
// others can read.
func readSecrets(path string) (map[string]store.Secrets, error) {
	if path == "" {
		return nil, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("--secrets %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out map[string]store.Secrets
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("--secrets %s: %v", path, err)
	}
	return out, nil
}
