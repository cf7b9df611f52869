package testbed

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestParseSmapsRollupSplitsPrivateFromFile(t *testing.T) {
	rollup := []byte(`00400000-7ffca4be8000 ---p 00000000 00:00 0                              [rollup]
Rss:               95840 kB
Pss:               94683 kB
Pss_Anon:           8256 kB
Pss_File:          86427 kB
Pss_Shmem:             0 kB
Shared_Clean:       1280 kB
Private_Clean:     86304 kB
Private_Dirty:      8256 kB
Anonymous:          8256 kB
FilePmdMapped:     77824 kB
`)
	m, err := parseSmapsRollup(rollup)
	if err != nil {
		t.Fatal(err)
	}
	want := ProcMem{Total: 95840 << 10, Private: 8256 << 10, File: (95840 - 8256) << 10, FilePMD: 77824 << 10, PrivateDirty: 8256 << 10}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if got, wantS := m.String(), "idle-rss=93.6MiB idle-private=8.1MiB"; got != wantS {
		t.Fatalf("String() = %q, want %q", got, wantS)
	}
}

func TestParseSmapsRollupWithoutRssIsAnError(t *testing.T) {
	if _, err := parseSmapsRollup([]byte("Pss: 1 kB\n")); err == nil {
		t.Fatal("want an error for a rollup without an Rss line")
	}
}

func TestReadAPIRequestsByMethodWatchesApart(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# HELP rebootgate_api_requests_total Requests.
# TYPE rebootgate_api_requests_total counter
rebootgate_api_requests_total{method="GET",watch="false"} 7
rebootgate_api_requests_total{method="GET",watch="true"} 3
rebootgate_api_requests_total{method="POST",watch="false"} 2
rebootgate_other_total 9
`)
	}))
	defer srv.Close()
	got, err := ReadAPIRequests(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := APIRequests{"GET": 7, "GET watch": 3, "POST": 2}
	if !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got.NonWatch() != 9 || got.Watch() != 3 {
		t.Fatalf("NonWatch %v Watch %v, want 9 and 3", got.NonWatch(), got.Watch())
	}
	later := APIRequests{"GET": 7, "GET watch": 4, "POST": 2}
	if d := later.Since(got); !maps.Equal(d, APIRequests{"GET watch": 1}) {
		t.Fatalf("Since = %v, want only the new watch", d)
	}
}
