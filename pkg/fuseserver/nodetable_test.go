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

func TestNodeTableGetIfAndSnapshot(t *testing.T) {
	var tb nodeTable[int]
	if tb.getIf(3) != nil || len(tb.snapshot()) != 0 {
		t.Fatal("an empty table gave an entry")
	}
	*tb.get(3) = 5
	v := tb.getIf(3)
	if v == nil || *v != 5 {
		t.Fatal("getIf missed an entry in use")
	}
	tb.put(3, nil) // getIf's use: the entry stays for get's
	snap := tb.snapshot()
	if len(snap) != 1 || snap[0].id != 3 || *snap[0].v != 5 {
		t.Fatalf("snapshot = %v", snap)
	}
	tb.put(3, nil)
	if tb.getIf(3) != nil {
		t.Fatal("getIf found a dropped entry")
	}
}
