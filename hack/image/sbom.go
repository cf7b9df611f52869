package main

import (
	"bytes"
	"cmp"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SPDX 2.3 JSON, the parts this SBOM uses.
type spdxDoc struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreation       `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreation struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name             string         `json:"name"`
	SPDXID           string         `json:"SPDXID"`
	VersionInfo      string         `json:"versionInfo,omitempty"`
	Supplier         string         `json:"supplier,omitempty"`
	DownloadLocation string         `json:"downloadLocation"`
	FilesAnalyzed    bool           `json:"filesAnalyzed"`
	Checksums        []spdxChecksum `json:"checksums,omitempty"`
	PrimaryPurpose   string         `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs     []spdxRef      `json:"externalRefs,omitempty"`
	Comment          string         `json:"comment,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// spdxID makes an SPDX identifier (letters, digits, '.', '-') from parts.
func spdxID(parts ...string) string {
	s := strings.Join(parts, "-")
	var b strings.Builder
	b.WriteString("SPDXRef-")
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

func goPurl(path, version string) string {
	return "pkg:golang/" + path + "@" + url.PathEscape(version)
}

// spdx writes the SBOM of one image: the image, the Go binary (its main module, every
// module and the Go toolchain from its build info) and the Debian packages of its base.
func spdx(cfg config, v variant, arch string, img v1.Image, files tree, pkgs []pkgSpec, versions map[string]debPackage) ([]byte, error) {
	bin, ok := files["usr/local/bin/rebootgate"]
	if !ok {
		return nil, fmt.Errorf("no binary in the image")
	}
	info, err := buildinfo.Read(bytes.NewReader(bin.data))
	if err != nil {
		return nil, fmt.Errorf("reading the binary's Go build info: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	imageID := spdxID("image", v.name, arch)
	binID := spdxID("gomod", info.Main.Path)
	doc := spdxDoc{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT",
		Name:              fmt.Sprintf("%s:%s%s linux/%s", cfg.repository, cfg.version, v.tagSuffix, arch),
		DocumentNamespace: fmt.Sprintf("https://github.com/rebootgate/rebootgate/sbom/%s/%s/%s", v.name, arch, digest.Hex),
		CreationInfo: spdxCreation{
			Created:  cfg.epoch.UTC().Format("2006-01-02T15:04:05Z"),
			Creators: []string{"Tool: rebootgate-hack-image", "Organization: rebootgate"},
		},
	}
	doc.Packages = append(doc.Packages, spdxPackage{
		Name: cfg.repository + v.tagSuffix, SPDXID: imageID, VersionInfo: digest.String(),
		DownloadLocation: "NOASSERTION", PrimaryPurpose: "CONTAINER",
		Checksums: []spdxChecksum{{"SHA256", digest.Hex}},
		ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl",
			fmt.Sprintf("pkg:oci/%s@%s?arch=%s&repository_url=%s", v.name, url.PathEscape(digest.String()), arch, url.QueryEscape(strings.TrimSuffix(cfg.repository, "/"+v.name)))}},
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", imageID})

	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// The commit: the binary's own record, else the one the build was given (GOFLAGS may
	// carry -buildvcs=false).
	mainVersion := cfg.version
	if rev := cmp.Or(settings["vcs.revision"], cfg.revision); rev != "" {
		mainVersion += "+" + rev
	}
	doc.Packages = append(doc.Packages, spdxPackage{
		Name: info.Main.Path, SPDXID: binID, VersionInfo: mainVersion,
		DownloadLocation: "https://github.com/rebootgate/rebootgate", PrimaryPurpose: "APPLICATION",
		Checksums:    []spdxChecksum{{"SHA256", sha256Hex(bin.data)}},
		ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl", goPurl(info.Main.Path, mainVersion)}},
		Comment: fmt.Sprintf("/usr/local/bin/rebootgate, built by %s with GOOS=%s GOARCH=%s CGO_ENABLED=%s -trimpath=%s",
			info.GoVersion, settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"], settings["-trimpath"]),
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{imageID, "CONTAINS", binID})
	goID := spdxID("golang", "stdlib", info.GoVersion)
	doc.Packages = append(doc.Packages, spdxPackage{
		Name: "stdlib", SPDXID: goID, VersionInfo: info.GoVersion, DownloadLocation: "https://go.dev/dl/",
		ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl", goPurl("stdlib", info.GoVersion)}},
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{binID, "DEPENDS_ON", goID})
	for _, d := range info.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		id := spdxID("gomod", m.Path, m.Version)
		p := spdxPackage{
			Name: m.Path, SPDXID: id, VersionInfo: m.Version, DownloadLocation: "https://proxy.golang.org/" + m.Path + "/@v/" + m.Version + ".zip",
			ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl", goPurl(m.Path, m.Version)}},
		}
		if m.Sum != "" {
			p.Comment = "go.sum " + m.Sum
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, spdxRelationship{binID, "DEPENDS_ON", id})
	}
	for _, p := range pkgs {
		if !slices.Contains(p.images, imageKind(v)) {
			continue
		}
		dv, ok := versions[p.name]
		if !ok {
			return nil, fmt.Errorf("package %s is not in versions.txt (run hack/image/debs.sh)", p.name)
		}
		id := spdxID("deb", p.name, dv.version, dv.arch)
		comment := "all files"
		if len(p.include) > 0 {
			comment = "only " + strings.Join(p.include, ", ")
		}
		doc.Packages = append(doc.Packages, spdxPackage{
			Name: p.name, SPDXID: id, VersionInfo: dv.version, Supplier: "Organization: Debian",
			DownloadLocation: "NOASSERTION", Checksums: []spdxChecksum{{"SHA256", dv.sha256}},
			ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl",
				fmt.Sprintf("pkg:deb/debian/%s@%s?arch=%s&distro=debian-12", p.name, url.PathEscape(dv.version), dv.arch)}},
			Comment: "from the .deb: " + comment,
		})
		doc.Relationships = append(doc.Relationships, spdxRelationship{imageID, "CONTAINS", id})
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
