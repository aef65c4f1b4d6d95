package fuseserver

import "testing"

func TestNodeTableKeepsEntriesWhileUsed(t *testing.T) {
	var tb nodeTable[int]
	a := tb.get(7)
	*a = 1
	if b := tb.get(7); b != a {
		t.Fatal("a second use of a node got another entry")
	}
	tb.put(7, nil)
	if *tb.get(7) != 1 {
		t.Fatal("the entry was dropped while a use was left")
	}
	tb.put(7, nil)
	tb.put(7, func(v *int) bool { return *v == 0 }) // last use, but not idle
	if *tb.get(7) != 1 {
		t.Fatal("an entry its idle check keeps was dropped")
	}
	tb.put(7, nil) // last use, idle
	if *tb.get(7) != 0 || len(tb.nodes) != 1 {
		t.Fatal("an unused idle entry was kept")
	}
}
