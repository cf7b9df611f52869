package footprint

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// Release unmaps the executable's read-only pages that this process has no
// private copy of, and returns freed heap memory to the operating system. It
// returns the number of bytes of address space it released. Writable mappings,
// and read-only ones holding pages the process wrote before making them read-only
// (the dynamic loader's relocations), are left alone: dropping those would lose
// data, not just a cached copy.
func Release() (int64, error) {
	debug.FreeOSMemory()
	fi, err := os.Stat("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("releasing the executable's pages: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("releasing the executable's pages: no inode for /proc/self/exe")
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("releasing the executable's pages: %w", err)
	}
	var released int64
	for _, r := range codeRegions(data, st.Ino) {
		// MADV_DONTNEED unmaps the range; a clean page of a file mapping is read
		// again from the page cache on its next access.
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, r.start, r.end-r.start, syscall.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("releasing the executable's pages at %#x: %w", r.start, errno)
		}
		released += int64(r.end - r.start)
	}
	return released, nil
}

type region struct {
	start, end uintptr
	anonymous  bool
}

// codeRegions parses /proc/self/smaps: the read-only mappings of the file with
// inode ino that hold no anonymous (copied-on-write) pages.
func codeRegions(smaps []byte, ino uint64) []region {
	var out []region
	cur := -1 // the index in out of the mapping whose fields are being read
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && !strings.HasSuffix(f[0], ":") && strings.Contains(f[0], "-") {
			// A mapping's header: range perms offset dev inode [path].
			cur = -1
			lo, hi, _ := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			inode, err3 := strconv.ParseUint(f[4], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil || inode != ino || len(f[1]) < 4 || f[1][1] != '-' {
				continue
			}
			out = append(out, region{start: uintptr(start), end: uintptr(end)})
			cur = len(out) - 1
			continue
		}
		// A page copied on write (Anonymous), or such a page swapped out (Swap), is
		// the process's own data: dropping it would lose it.
		if cur >= 0 && len(f) >= 2 && (f[0] == "Anonymous:" || f[0] == "Swap:") && f[1] != "0" {
			out[cur].anonymous = true
		}
	}
	kept := out[:0]
	for _, r := range out {
		if !r.anonymous {
			kept = append(kept, r)
		}
	}
	return kept
}
