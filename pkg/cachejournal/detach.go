package cachejournal

// Detach records that the file at name is about to lose its name (an
// unlink, or a rename onto it) while rclone still holds it: open, or
// queued for upload. rclone's cache item of that file then leaves the
// cache's table, and it keeps saving its metadata under the name it had:
// at a write through it, at its last close (rclone v1.76.0, Item.Close)
// and at the end of an upload it queued (Item._store, which first uploads
// whatever data file holds the name then). It saves over the metadata of
// the file holding the name by then: clean after an unlink (Item._remove
// emptied it), the earlier file's after a rename onto it. A file written
// and closed there since would read as uploaded: an fsync would skip its
// upload, Sweep and Repair would drop its record, and a server killed
// before its upload would lose it.
//
// Until the matching Reattach, Detached reports name, Sweep keeps its
// record, and Repair (after a kill) takes nothing from its metadata: it
// rewrites it from the record, as for a torn one. Call Detach before the
// unlink or rename is made.
func (j *Journal) Detach(name string) error {
	name = cleanName(name)
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.append(record{Detached: name}); err != nil {
		return err
	}
	j.detached[name]++
	return nil
}

// Reattach ends one Detach of name: the unlink or rename failed, or the
// earlier file's item can save no more (it has no handle open and no
// upload queued) and the file holding the name now is closed and has no
// upload queued either: it is uploaded, its record no longer needed
// (Sweep drops it by the metadata, which may be the earlier file's, clean;
// a leftover saved dirty by the earlier item keeps the record until the
// next server uploads the file once more).
func (j *Journal) Reattach(name string) error {
	name = cleanName(name)
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.append(record{Reattached: name}); err != nil {
		return err
	}
	j.undetach(name)
	return nil
}

// Detached reports whether name has a Detach not yet reattached: its
// metadata may be an earlier file's.
func (j *Journal) Detached(name string) bool {
	name = cleanName(name)
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.detached[name] > 0
}

// Recorded reports whether name has a record: writes the application was
// told are done and that are not known to be uploaded.
func (j *Journal) Recorded(name string) bool {
	name = cleanName(name)
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.written[name]
	return ok
}

// undetach ends one detach of name in memory; mu is held.
func (j *Journal) undetach(name string) {
	if j.detached[name]--; j.detached[name] <= 0 {
		delete(j.detached, name)
	}
}
