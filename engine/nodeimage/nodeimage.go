package nodeimage

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version is a parsed node image version label.
type Version struct {
	// Raw is the label value exactly as given to Parse.
	Raw string
	// Family is the part before the first hyphen, e.g. "AKSUbuntu",
	// "AKSAzureLinux", "AKSCBLMariner", "AKSWindows".
	Family string
	// SKU is everything between the family and the build, e.g.
	// "2204gen2containerd"; without a recognised build it is everything
	// after the family ("23H2-gen2").
	SKU string
	// OS is the release at the start of the SKU: "2204", "1604", "V2",
	// "23H2", "2022". Empty when the SKU does not start with one.
	OS string
	// Generation is the Hyper-V generation named in the SKU ("gen2"), or
	// empty (images without it are generation 1).
	Generation string
	// Arch is the CPU architecture named in the SKU ("arm64"), or empty
	// (images without it are amd64).
	Arch string
	// Runtime is the container runtime named in the SKU ("containerd"), or
	// empty.
	Runtime string
	// Build is the dated build, "202509.23.0" or "2020.10.08", or empty.
	Build string
	// Date is the build date (UTC midnight) when HasDate is set.
	Date    time.Time
	HasDate bool
	// Patch is the build's trailing number: 0 in "202509.23.0", and 0 for
	// builds of the YYYY.MM.DD form.
	Patch int
}

// Parse parses a kubernetes.azure.com/node-image-version label value.
//
// The value is split at hyphens. The first part is the family, which must
// start with "AKS". The last part is the build if it has the form
// YYYYMM.DD.patch or YYYY.MM.DD, in which case its date must be a real
// calendar date; any other last part (such as "gen2" or a Windows build
// number like "20348.2527.240607") is kept as part of the SKU and the
// version has no date. Parse reports an error for an empty value, characters
// not allowed in a label value, empty parts, a missing SKU, a family not
// starting with "AKS", and an impossible build date or patch; every error
// names the offending value.
func Parse(s string) (Version, error) {
	if s == "" {
		return Version{}, fmt.Errorf("node image version is empty")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '.' && c != '_' {
			return Version{}, fmt.Errorf("node image version %q: character %q is not allowed", s, rune(c))
		}
	}
	parts := strings.Split(s, "-")
	for _, p := range parts {
		if p == "" {
			return Version{}, fmt.Errorf("node image version %q has an empty part (use FAMILY-SKU-BUILD, e.g. AKSUbuntu-2204gen2containerd-202509.23.0)", s)
		}
	}
	v := Version{Raw: s, Family: parts[0]}
	if !strings.HasPrefix(v.Family, "AKS") {
		return Version{}, fmt.Errorf("node image version %q: family %q does not start with \"AKS\"", s, v.Family)
	}
	rest := parts[1:]
	if n := len(rest); n > 0 {
		date, patch, isBuild, err := parseBuild(rest[n-1])
		if err != nil {
			return Version{}, fmt.Errorf("node image version %q: %w", s, err)
		}
		if isBuild {
			v.Build, v.Date, v.HasDate, v.Patch = rest[n-1], date, true, patch
			rest = rest[:n-1]
		}
	}
	if len(rest) == 0 {
		return Version{}, fmt.Errorf("node image version %q has no SKU (use FAMILY-SKU-BUILD, e.g. AKSUbuntu-2204gen2containerd-202509.23.0)", s)
	}
	v.SKU = strings.Join(rest, "-")
	v.OS, v.Generation, v.Arch, v.Runtime = parseSKU(v.SKU)
	return v, nil
}

// parseBuild recognises YYYYMM.DD.patch and YYYY.MM.DD. isBuild is false
// (and err nil) for anything of another shape; err is set when the shape
// matches but the date or patch is impossible.
func parseBuild(p string) (date time.Time, patch int, isBuild bool, err error) {
	fields := strings.Split(p, ".")
	if len(fields) != 3 || !allDigits(fields[0]) || !allDigits(fields[1]) || !allDigits(fields[2]) {
		return time.Time{}, 0, false, nil
	}
	var y, m, d string
	switch {
	case len(fields[0]) == 6 && len(fields[1]) == 2: // YYYYMM.DD.patch
		y, m, d = fields[0][:4], fields[0][4:], fields[1]
		if patch, err = strconv.Atoi(fields[2]); err != nil {
			return time.Time{}, 0, false, fmt.Errorf("build %q: patch %q is out of range", p, fields[2])
		}
	case len(fields[0]) == 4 && len(fields[1]) == 2 && len(fields[2]) == 2: // YYYY.MM.DD
		y, m, d = fields[0], fields[1], fields[2]
	default:
		return time.Time{}, 0, false, nil
	}
	yy, _ := strconv.Atoi(y) // all digits, at most four: cannot fail
	mm, _ := strconv.Atoi(m)
	dd, _ := strconv.Atoi(d)
	date = time.Date(yy, time.Month(mm), dd, 0, 0, 0, 0, time.UTC)
	if yy < 1 || date.Year() != yy || date.Month() != time.Month(mm) || date.Day() != dd {
		return time.Time{}, 0, false, fmt.Errorf("build %q: %s-%s-%s is not a valid date", p, y, m, d)
	}
	return date, patch, true, nil
}

// parseSKU extracts the OS release prefix and the well-known features.
func parseSKU(sku string) (osRelease, generation, arch, runtime string) {
	i := 0
	switch {
	case len(sku) > 1 && sku[0] == 'V' && isDigit(sku[1]): // V2, V3 (Azure Linux)
		i = 1 + digitRun(sku[1:])
	case len(sku) > 0 && isDigit(sku[0]): // 2204, 1604, 2022, 23H2
		i = digitRun(sku)
		if i+1 < len(sku) && sku[i] == 'H' && isDigit(sku[i+1]) {
			i += 1 + digitRun(sku[i+1:])
		}
	}
	osRelease = sku[:i]
	for i < len(sku) {
		r := sku[i:]
		switch {
		case generation == "" && strings.HasPrefix(r, "gen") && len(r) > 3 && isDigit(r[3]):
			n := 3 + digitRun(r[3:])
			generation = r[:n]
			i += n
		case arch == "" && (strings.HasPrefix(r, "arm64") || strings.HasPrefix(r, "amd64")):
			arch = r[:5]
			i += 5
		case runtime == "" && strings.HasPrefix(r, "containerd"):
			runtime = "containerd"
			i += len(runtime)
		case runtime == "" && strings.HasPrefix(r, "docker"):
			runtime = "docker"
			i += len(runtime)
		default:
			i++
		}
	}
	return osRelease, generation, arch, runtime
}

// DateString returns the build date as "2006-01-02", or "" without one.
func (v Version) DateString() string {
	if !v.HasDate {
		return ""
	}
	return v.Date.Format("2006-01-02")
}

// String returns the label value.
func (v Version) String() string { return v.Raw }

// Compare orders versions by build recency: by date, then by patch. It
// returns -1 when a is older than b, +1 when newer and 0 when equally
// recent. A version without a date is older than any dated one. Family and
// SKU are not compared: comparing builds of different images is the
// caller's decision.
func Compare(a, b Version) int {
	switch {
	case a.HasDate != b.HasDate:
		if a.HasDate {
			return 1
		}
		return -1
	case a.HasDate && !a.Date.Equal(b.Date):
		if a.Date.Before(b.Date) {
			return -1
		}
		return 1
	case a.Patch < b.Patch:
		return -1
	case a.Patch > b.Patch:
		return 1
	}
	return 0
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func allDigits(s string) bool {
	return s != "" && digitRun(s) == len(s)
}

func digitRun(s string) int {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return n
}
