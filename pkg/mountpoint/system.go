package mountpoint

// System is this node's real mount table as a value, for code that takes
// its mounts as an interface (pkg/driver's Mounts): each method is the
// package function of the same name.
type System struct{}

// Get is Get.
func (System) Get(path string) (*Info, error) { return Get(path) }

// Below is Below.
func (System) Below(dir string) ([]string, error) { return Below(dir) }

// Bind is Bind.
func (System) Bind(src, dst string, ro bool) error { return Bind(src, dst, ro) }

// Unmount is Unmount.
func (System) Unmount(path string) error { return Unmount(path) }

// Detach is Detach.
func (System) Detach(path string) error { return Detach(path) }
