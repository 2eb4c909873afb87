package images

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// cpioEntry is one file of an initramfs.
type cpioEntry struct {
	mode uint32 // type and permission bits, e.g. 0o100755, 0o040755, 0o120777
	data []byte // file contents, or the symlink target
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
)

// writeCPIO writes entries as a newc ("070701") archive, as the kernel
// unpacks an initramfs: directories first, then in path order, every
// timestamp and owner zero, so the same entries give the same bytes.
func writeCPIO(w io.Writer, entries map[string]cpioEntry) error {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		di, dj := strings.Count(names[i], "/"), strings.Count(names[j], "/")
		if (entries[names[i]].mode&0o170000 == modeDir) != (entries[names[j]].mode&0o170000 == modeDir) {
			return entries[names[i]].mode&0o170000 == modeDir
		}
		if di != dj {
			return di < dj
		}
		return names[i] < names[j]
	})
	ino := uint32(1)
	write := func(name string, mode uint32, data []byte) error {
		nlink := uint32(1)
		if mode&0o170000 == modeDir {
			nlink = 2
		}
		hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		if _, err := io.WriteString(w, hdr+name+"\x00"); err != nil {
			return err
		}
		if err := pad(w, len(hdr)+len(name)+1); err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		return pad(w, len(data))
	}
	for _, n := range names {
		if err := write(n, entries[n].mode, entries[n].data); err != nil {
			return err
		}
	}
	return write("TRAILER!!!", 0, nil)
}

func pad(w io.Writer, n int) error {
	if r := n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
