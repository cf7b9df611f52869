package footprint

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const smapsSample = `00400000-00c00000 r--p 00000000 fe:00 4242   /usr/local/bin/rebootgate
Rss:                2048 kB
Anonymous:             0 kB
00c00000-02000000 r-xp 00800000 fe:00 4242   /usr/local/bin/rebootgate
Rss:               10240 kB
Anonymous:             0 kB
02000000-02001000 r--p 01c00000 fe:00 4242   /usr/local/bin/rebootgate
Rss:                   4 kB
Anonymous:             4 kB
02001000-02002000 r--p 01c01000 fe:00 4242   /usr/local/bin/rebootgate
Rss:                   0 kB
Anonymous:             0 kB
Swap:                  4 kB
02002000-02100000 rw-p 01c02000 fe:00 4242   /usr/local/bin/rebootgate
Rss:                 400 kB
Anonymous:           100 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 99   /usr/lib/libc.so.6
Rss:                 800 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                1024 kB
Anonymous:          1024 kB
`

func TestCodeRegionsAreTheExecutablesCleanReadOnlyMappings(t *testing.T) {
	got := codeRegions([]byte(smapsSample), 4242)
	want := []region{{start: 0x400000, end: 0xc00000}, {start: 0xc00000, end: 0x2000000}}
	if len(got) != len(want) {
		t.Fatalf("got %d regions %+v, want %+v (writable, relocated or swapped, and other files' mappings excluded)", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("region %d = %#x-%#x, want %#x-%#x", i, got[i].start, got[i].end, want[i].start, want[i].end)
		}
	}
}

// exeCodeRss is the resident size of this process's executable's clean read-only
// mappings.
func exeCodeRss(t *testing.T) int {
	t.Helper()
	fi, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	ino := strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	kb, in := 0, false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = f[4] == ino && f[1][1] == '-'
			continue
		}
		if in && len(f) >= 2 && f[0] == "Rss:" {
			n, _ := strconv.Atoi(f[1])
			kb += n
		}
	}
	return kb
}

func TestReleaseUnmapsCodeThatStillRuns(t *testing.T) {
	before := exeCodeRss(t)
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("Release unmapped nothing")
	}
	after := exeCodeRss(t) // runs code of this binary: it faults back in
	if after >= before {
		t.Fatalf("the executable's read-only pages: %d kB resident before Release, %d kB after; want fewer", before, after)
	}
}
