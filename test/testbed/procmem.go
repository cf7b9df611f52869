package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcMem is a process's resident memory, in bytes, from /proc/<pid>/smaps_rollup.
//
// Total is what `ps` and `top` call RSS. Private is the process's anonymous memory
// (Go heap, stacks, the runtime's own structures): memory no other process can
// share, and what grows with the agent's work. File is the rest: pages of mapped
// files (the binary's code and read-only data), which the page cache holds once
// for every process running the same binary.
type ProcMem struct {
	Total   uint64
	Private uint64
	File    uint64
	// FilePMD is the part of File mapped as 2 MiB huge pages (FilePmdMapped).
	FilePMD uint64
	// PrivateDirty is smaps' Private_Dirty: anonymous memory written to, plus file
	// pages written and not yet on disk (a binary just built).
	PrivateDirty uint64
}

// MiB converts bytes to MiB.
func MiB(b uint64) float64 { return float64(b) / (1 << 20) }

// String is the form `make bench-footprint` prints: idle-rss=XMiB idle-private=XMiB.
func (m ProcMem) String() string {
	return fmt.Sprintf("idle-rss=%.1fMiB idle-private=%.1fMiB", MiB(m.Total), MiB(m.Private))
}

// ReadProcMem reads pid's /proc/<pid>/smaps_rollup.
func ReadProcMem(pid int) (ProcMem, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return ProcMem{}, fmt.Errorf("reading the memory of process %d: %w", pid, err)
	}
	return parseSmapsRollup(data)
}

func parseSmapsRollup(data []byte) (ProcMem, error) {
	fields := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return ProcMem{}, fmt.Errorf("smaps_rollup: %q: %w", sc.Text(), err)
		}
		fields[strings.TrimSuffix(f[0], ":")] = kb << 10
	}
	rss, ok := fields["Rss"]
	if !ok {
		return ProcMem{}, fmt.Errorf("smaps_rollup: no Rss line")
	}
	m := ProcMem{Total: rss, Private: fields["Anonymous"], FilePMD: fields["FilePmdMapped"], PrivateDirty: fields["Private_Dirty"]}
	// Rss counts anonymous, file and shared-memory pages; Pss_Shmem is the only
	// per-kind split of shmem the rollup has, and an agent maps none.
	m.File = rss - min(rss, m.Private+fields["Pss_Shmem"])
	return m, nil
}

// WaitReady polls url (an agent's /readyz) every 10 ms until it answers 200 and
// returns the time from start (when the process was started) to that answer.
func WaitReady(ctx context.Context, url string, start time.Time, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, fmt.Errorf("polling %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
			last = fmt.Errorf("HTTP %d", resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s not ready after %s (last: %v): %w", url, timeout, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// APIRequests are an agent's API requests so far, from its
// rebootgate_api_requests_total, by HTTP method; a watch's key has " watch" added
// ("GET watch").
type APIRequests map[string]float64

// NonWatch is the number of requests that are not watches.
func (r APIRequests) NonWatch() float64 { return r.sum(false) }

// Watch is the number of watch requests.
func (r APIRequests) Watch() float64 { return r.sum(true) }

func (r APIRequests) sum(watch bool) float64 {
	var n float64
	for k, v := range r {
		if strings.HasSuffix(k, " watch") == watch {
			n += v
		}
	}
	return n
}

// Since is the requests made after earlier, only the kinds with any.
func (r APIRequests) Since(earlier APIRequests) APIRequests {
	out := APIRequests{}
	for k, v := range r {
		if d := v - earlier[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// ReadAPIRequests reads an agent's rebootgate_api_requests_total from its /metrics.
func ReadAPIRequests(ctx context.Context, metricsURL string) (APIRequests, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", metricsURL, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading %s: HTTP %d", metricsURL, resp.StatusCode)
	}
	out := APIRequests{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		labels, ok := strings.CutPrefix(line, "rebootgate_api_requests_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(labels, "} ")
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %q: %w", metricsURL, line, err)
		}
		key := ""
		for _, l := range strings.Split(labels, ",") {
			name, val, _ := strings.Cut(l, "=")
			val = strings.Trim(val, `"`)
			switch {
			case name == "method":
				key = val + key
			case name == "watch" && val == "true":
				key += " watch"
			}
		}
		out[key] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", metricsURL, err)
	}
	return out, nil
}
