package fault

import "errors"

// all lists every kind, for Kind and FromKind.
var all = []error{Invalid, NotFound, Denied, Conflict, Precondition, Busy, Pending, Unavailable, Exhausted}

// Kind returns the name of err's kind (its sentinel's text, such as
// "invalid argument"), or "" when err has none. With FromKind it carries a
// kind across a process boundary (the mounter host's replies).
func Kind(err error) string {
	for _, k := range all {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return ""
}

// FromKind returns the kind named name, or nil for an unknown name.
func FromKind(name string) error {
	for _, k := range all {
		if k.Error() == name {
			return k
		}
	}
	return nil
}
