package fuseproto

import (
	"encoding/json"
	"testing"
)

// A config saved in a volume's state directory by a driver before the
// explicit settings (mode only) restarts a server with the settings that
// mode had; a config with explicit settings is read as written.
func TestConfigReadsSavedFormats(t *testing.T) {
	for _, tc := range []struct {
		name, saved string
		want        Config
	}{
		{"old MOUNT", `{"volumeID":"v","mountPoint":"/m","bucket":"b","mode":"MOUNT","serverModTime":true,"readAheadMemory":-1}`,
			Config{ReadAhead: true, ServerModTime: true, ReadAheadMemory: -1}},
		{"old MOUNT with object mtimes", `{"volumeID":"v","mountPoint":"/m","bucket":"b","mode":"MOUNT"}`,
			Config{ReadAhead: true}},
		{"old MOUNT_CACHED", `{"volumeID":"v","mountPoint":"/m","bucket":"b","mode":"MOUNT_CACHED","cacheDir":"/c","serverModTime":true}`,
			Config{Cache: true, Durable: true, CacheDir: "/c"}},
		{"explicit cache without durable fsync", `{"format":2,"volumeID":"v","mountPoint":"/m","bucket":"b","mode":"MOUNT_CACHED","cache":true,"cacheDir":"/c"}`,
			Config{Cache: true, CacheDir: "/c"}},
		{"explicit plain streaming", `{"format":2,"volumeID":"v","mountPoint":"/m","bucket":"b","mode":"MOUNT"}`,
			Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Config
			if err := json.Unmarshal([]byte(tc.saved), &got); err != nil {
				t.Fatal(err)
			}
			if got.Format != ConfigFormat || got.VolumeID != "v" || got.Bucket != "b" {
				t.Fatalf("format %d, volume %q, bucket %q", got.Format, got.VolumeID, got.Bucket)
			}
			if got.Cache != tc.want.Cache || got.Durable != tc.want.Durable || got.ReadAhead != tc.want.ReadAhead ||
				got.ServerModTime != tc.want.ServerModTime || got.CacheDir != tc.want.CacheDir || got.ReadAheadMemory != tc.want.ReadAheadMemory {
				t.Fatalf("settings = cache %v durable %v readAhead %v serverModTime %v cacheDir %q memory %d, want %+v",
					got.Cache, got.Durable, got.ReadAhead, got.ServerModTime, got.CacheDir, got.ReadAheadMemory, tc.want)
			}
			got.Remote = map[string]string{"type": "s3"}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// Validate refuses settings the server cannot serve together.
func TestConfigValidateSettings(t *testing.T) {
	base := Config{VolumeID: "v", MountPoint: "/m", Bucket: "b", Remote: map[string]string{"type": "s3"}}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"cache without a directory", func(c *Config) { c.Cache = true }},
		{"cache and read-ahead", func(c *Config) { c.Cache, c.CacheDir, c.ReadAhead = true, "/c", true }},
		{"prefetch without a cache", func(c *Config) { c.Prefetch = true }},
		{"cache and server mtimes", func(c *Config) { c.Cache, c.CacheDir, c.ServerModTime = true, "/c", true }},
		{"durable without a cache", func(c *Config) { c.Durable = true }},
	} {
		c := base
		tc.edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", tc.name, c)
		}
	}
}
