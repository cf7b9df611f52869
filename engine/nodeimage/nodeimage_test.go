package nodeimage

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in                                    string
		family, sku, os, gen, arch, rt, build string
		date                                  string
		patch                                 int
	}{
		{in: "AKSUbuntu-2204gen2containerd-202509.23.0", family: "AKSUbuntu", sku: "2204gen2containerd", os: "2204", gen: "gen2", rt: "containerd", build: "202509.23.0", date: "2025-09-23"},
		{in: "AKSUbuntu-1604-2020.10.08", family: "AKSUbuntu", sku: "1604", os: "1604", build: "2020.10.08", date: "2020-10-08"},
		{in: "AKSUbuntu-2204gen2arm64containerd-202402.26.0", family: "AKSUbuntu", sku: "2204gen2arm64containerd", os: "2204", gen: "gen2", arch: "arm64", rt: "containerd", build: "202402.26.0", date: "2024-02-26"},
		{in: "AKSUbuntu-2204gen2TLcontainerd-202407.15.1", family: "AKSUbuntu", sku: "2204gen2TLcontainerd", os: "2204", gen: "gen2", rt: "containerd", build: "202407.15.1", date: "2024-07-15", patch: 1},
		{in: "AKSAzureLinux-V2gen2-202402.26.0", family: "AKSAzureLinux", sku: "V2gen2", os: "V2", gen: "gen2", build: "202402.26.0", date: "2024-02-26"},
		{in: "AKSCBLMariner-V2gen2arm64-202402.26.0", family: "AKSCBLMariner", sku: "V2gen2arm64", os: "V2", gen: "gen2", arch: "arm64", build: "202402.26.0", date: "2024-02-26"},
		{in: "AKSUbuntu-2404gen2containerd-202510.03.0", family: "AKSUbuntu", sku: "2404gen2containerd", os: "2404", gen: "gen2", rt: "containerd", build: "202510.03.0", date: "2025-10-03"},
		{in: "AKSUbuntu-1804gen2gpucontainerd-202312.06.0", family: "AKSUbuntu", sku: "1804gen2gpucontainerd", os: "1804", gen: "gen2", rt: "containerd", build: "202312.06.0", date: "2023-12-06"},
		{in: "AKSUbuntu-1804gpucontainerd-2022.08.29", family: "AKSUbuntu", sku: "1804gpucontainerd", os: "1804", rt: "containerd", build: "2022.08.29", date: "2022-08-29"},
		{in: "AKSUbuntu-2204containerd-202401.09.12", family: "AKSUbuntu", sku: "2204containerd", os: "2204", rt: "containerd", build: "202401.09.12", date: "2024-01-09", patch: 12},
		{in: "AKSAzureLinux-V3gen2fips-202506.30.0", family: "AKSAzureLinux", sku: "V3gen2fips", os: "V3", gen: "gen2", build: "202506.30.0", date: "2025-06-30"},
		{in: "AKSCBLMariner-V2katagen2-202402.26.0", family: "AKSCBLMariner", sku: "V2katagen2", os: "V2", gen: "gen2", build: "202402.26.0", date: "2024-02-26"},
		{in: "AKSUbuntu-1804-2021.01.06", family: "AKSUbuntu", sku: "1804", os: "1804", build: "2021.01.06", date: "2021-01-06"},
		{in: "AKSUbuntu-2204gen2containerd-202402.29.0", family: "AKSUbuntu", sku: "2204gen2containerd", os: "2204", gen: "gen2", rt: "containerd", build: "202402.29.0", date: "2024-02-29"},
		// Windows: no date; an unrecognised last part stays in the SKU.
		{in: "AKSWindows-23H2-gen2", family: "AKSWindows", sku: "23H2-gen2", os: "23H2", gen: "gen2"},
		{in: "AKSWindows-2022-containerd-20348.2527.240607", family: "AKSWindows", sku: "2022-containerd-20348.2527.240607", os: "2022", rt: "containerd"},
		{in: "AKSWindows-2019-containerd", family: "AKSWindows", sku: "2019-containerd", os: "2019", rt: "containerd"},
		{in: "AKSWindows-2022", family: "AKSWindows", sku: "2022", os: "2022"},
		// A last part that is not exactly a build shape is part of the SKU.
		{in: "AKSUbuntu-2204gen2containerd-202509.23", family: "AKSUbuntu", sku: "2204gen2containerd-202509.23", os: "2204", gen: "gen2", rt: "containerd"},
		{in: "AKSUbuntu-customsku", family: "AKSUbuntu", sku: "customsku"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			got := []string{v.Raw, v.Family, v.SKU, v.OS, v.Generation, v.Arch, v.Runtime, v.Build, v.DateString()}
			want := []string{tt.in, tt.family, tt.sku, tt.os, tt.gen, tt.arch, tt.rt, tt.build, tt.date}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("Parse(%q)\n got raw|family|sku|os|gen|arch|runtime|build|date = %s\nwant %s", tt.in, strings.Join(got, "|"), strings.Join(want, "|"))
			}
			if v.HasDate != (tt.date != "") || v.Patch != tt.patch {
				t.Errorf("Parse(%q): HasDate=%v Patch=%d, want %v %d", tt.in, v.HasDate, v.Patch, tt.date != "", tt.patch)
			}
			if v.HasDate && (v.Date.Location().String() != "UTC" || v.Date.Hour() != 0) {
				t.Errorf("Parse(%q): date %s is not UTC midnight", tt.in, v.Date)
			}
			if v.String() != tt.in {
				t.Errorf("String() = %q", v.String())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "node image version is empty"},
		{"Ubuntu-2204gen2containerd-202509.23.0", `family "Ubuntu" does not start with "AKS"`},
		{"aksubuntu-2204-202509.23.0", `family "aksubuntu" does not start with "AKS"`},
		{"AKSUbuntu-2204gen2containerd-202513.40.0", `"AKSUbuntu-2204gen2containerd-202513.40.0": build "202513.40.0": 2025-13-40 is not a valid date`},
		{"AKSUbuntu-2204gen2containerd-202502.30.0", `2025-02-30 is not a valid date`},
		{"AKSUbuntu-2204gen2containerd-202302.29.0", `2023-02-29 is not a valid date`},
		{"AKSUbuntu-2204gen2containerd-202500.10.0", `2025-00-10 is not a valid date`},
		{"AKSUbuntu-2204gen2containerd-000001.01.0", `0000-01-01 is not a valid date`},
		{"AKSUbuntu-1604-2020.13.08", `build "2020.13.08": 2020-13-08 is not a valid date`},
		{"AKSUbuntu-2204-202509.23.99999999999999999999", `patch "99999999999999999999" is out of range`},
		{"AKSUbuntu", "has no SKU"},
		{"AKSUbuntu-202509.23.0", `"AKSUbuntu-202509.23.0" has no SKU`},
		{"AKSUbuntu--202509.23.0", "has an empty part"},
		{"AKSUbuntu-2204-", "has an empty part"},
		{"-2204-202509.23.0", "has an empty part"},
		{"AKSUbuntu-2204 gen2-202509.23.0", `character ' ' is not allowed`},
		{"AKSUbuntu-2204/gen2", `character '/' is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) = %+v, %v; want error containing %q", tt.in, v, err, tt.want)
			}
			if tt.in != "" && !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("error %q does not name the value", err)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	// Listed oldest first; equal neighbours share a rank.
	ordered := []struct {
		rank int
		in   string
	}{
		{0, "AKSWindows-23H2-gen2"},
		{0, "AKSWindows-2022-containerd-20348.2527.240607"},
		{1, "AKSUbuntu-1604-2020.10.08"},
		{1, "AKSUbuntu-1804-202010.08.0"},
		{2, "AKSUbuntu-1804-202010.08.1"},
		{3, "AKSUbuntu-2204gen2containerd-202402.26.0"},
		{3, "AKSCBLMariner-V2gen2arm64-202402.26.0"},
		{4, "AKSUbuntu-2204gen2containerd-202402.26.3"},
		{5, "AKSUbuntu-2204gen2containerd-202402.27.0"},
		{6, "AKSUbuntu-2204gen2containerd-202509.23.0"},
		{7, "AKSUbuntu-2404gen2containerd-202510.03.0"},
	}
	for _, a := range ordered {
		va, err := Parse(a.in)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range ordered {
			vb, err := Parse(b.in)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if a.rank < b.rank {
				want = -1
			} else if a.rank > b.rank {
				want = 1
			}
			if got := Compare(va, vb); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a.in, b.in, got, want)
			}
		}
	}
}
