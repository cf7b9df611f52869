package nodeimage

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"AKSUbuntu-2204gen2containerd-202509.23.0",
		"AKSUbuntu-1604-2020.10.08",
		"AKSUbuntu-2204gen2arm64containerd-202402.26.0",
		"AKSAzureLinux-V2gen2-202402.26.0",
		"AKSWindows-23H2-gen2",
		"AKSWindows-2022-containerd-20348.2527.240607",
		"AKSUbuntu-2204gen2containerd-202513.40.0",
		"AKSUbuntu-202509.23.0",
		"AKS-V-gen-arm6",
		"AKSUbuntu-2204-202509.23.99999999999999999999",
		"", "-", "AKS", "AKSx--", "AKSUbuntu-23H",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			if s != "" && !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("Parse(%q) error %q does not name the value", s, err)
			}
			return
		}
		if v.Raw != s || v.String() != s {
			t.Fatalf("Parse(%q).Raw = %q", s, v.Raw)
		}
		rebuilt := v.Family + "-" + v.SKU
		if v.Build != "" {
			rebuilt += "-" + v.Build
		}
		if rebuilt != s {
			t.Fatalf("Parse(%q): parts rebuild to %q", s, rebuilt)
		}
		if !strings.HasPrefix(v.Family, "AKS") || v.SKU == "" || strings.Contains(v.Family, "-") {
			t.Fatalf("Parse(%q) = %+v", s, v)
		}
		if !strings.HasPrefix(v.SKU, v.OS) {
			t.Fatalf("Parse(%q): OS %q is not the SKU's prefix", s, v.OS)
		}
		for _, feat := range []string{v.Generation, v.Arch, v.Runtime} {
			if !strings.Contains(v.SKU, feat) {
				t.Fatalf("Parse(%q): %q is not in the SKU", s, feat)
			}
		}
		if v.HasDate != (v.Build != "") || v.Patch < 0 {
			t.Fatalf("Parse(%q): HasDate=%v Build=%q Patch=%d", s, v.HasDate, v.Build, v.Patch)
		}
		if v.HasDate {
			d, err := time.Parse("2006-01-02", v.DateString())
			if err != nil || !d.Equal(v.Date) {
				t.Fatalf("Parse(%q): DateString %q does not round-trip: %v", s, v.DateString(), err)
			}
		} else if v.DateString() != "" {
			t.Fatalf("Parse(%q): DateString %q without a date", s, v.DateString())
		}
		again, err := Parse(v.Raw)
		if err != nil || again != v {
			t.Fatalf("Parse is not deterministic for %q", s)
		}
		if Compare(v, v) != 0 {
			t.Fatalf("Compare(%q, itself) != 0", s)
		}
		ref, _ := Parse("AKSUbuntu-2204gen2containerd-202509.23.0")
		if Compare(v, ref) != -Compare(ref, v) {
			t.Fatalf("Compare is not antisymmetric for %q", s)
		}
	})
}
