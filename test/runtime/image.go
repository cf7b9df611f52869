package runtime

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
)

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform,omitempty"`
}

type ociIndex struct {
	Manifests []ociDescriptor `json:"manifests"`
}

type ociManifest struct {
	Config ociDescriptor   `json:"config"`
	Layers []ociDescriptor `json:"layers"`
}

type ociConfig struct {
	Architecture string `json:"architecture"`
	Config       struct {
		Entrypoint, Cmd, Env []string
		User, WorkingDir     string
		Labels               map[string]string
	} `json:"config"`
}

func readBlob(layout, digest string, v any) error {
	alg, hex, ok := strings.Cut(digest, ":")
	if !ok {
		return fmt.Errorf("bad digest %q", digest)
	}
	data, err := os.ReadFile(filepath.Join(layout, "blobs", alg, hex))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Unpack extracts the image for this machine's architecture from the OCI image layout
// (whose index.json names one multi-arch index, as `make image` writes it) into dir, which
// must not exist, and returns its config. It is what the kubelet's runtime does before a
// container starts: owners, modes and symlinks as the layers have them.
func Unpack(layout, dir string) (ImageConfig, map[string]string, error) {
	var top ociIndex
	if err := readJSON(filepath.Join(layout, "index.json"), &top); err != nil {
		return ImageConfig{}, nil, err
	}
	if len(top.Manifests) != 1 {
		return ImageConfig{}, nil, fmt.Errorf("%s: index.json has %d manifests, want the one index", layout, len(top.Manifests))
	}
	var idx ociIndex
	if err := readBlob(layout, top.Manifests[0].Digest, &idx); err != nil {
		return ImageConfig{}, nil, err
	}
	var mdesc *ociDescriptor
	for i, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == goruntime.GOARCH {
			mdesc = &idx.Manifests[i]
		}
	}
	if mdesc == nil {
		return ImageConfig{}, nil, fmt.Errorf("%s: no linux/%s image in the index", layout, goruntime.GOARCH)
	}
	var m ociManifest
	if err := readBlob(layout, mdesc.Digest, &m); err != nil {
		return ImageConfig{}, nil, err
	}
	var cfg ociConfig
	if err := readBlob(layout, m.Config.Digest, &cfg); err != nil {
		return ImageConfig{}, nil, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return ImageConfig{}, nil, err
	}
	for _, l := range m.Layers {
		alg, hex, _ := strings.Cut(l.Digest, ":")
		if err := extractLayer(filepath.Join(layout, "blobs", alg, hex), dir); err != nil {
			return ImageConfig{}, nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	c := cfg.Config
	return ImageConfig{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, User: c.User, WorkingDir: c.WorkingDir}, c.Labels, nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func extractLayer(blob, dir string) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	type dirMode struct {
		path string
		h    *tar.Header
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) || strings.Contains(filepath.Base(name), ".wh.") {
			return fmt.Errorf("unsupported entry %q", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{p, h})
			continue
		case tar.TypeReg:
			_ = os.Remove(p)
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			_ = os.Remove(p)
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported entry type %q for %s", h.Typeflag, h.Name)
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if err := os.Chmod(p, fileMode(h.Mode)); err != nil {
				return err
			}
		}
	}
	// Directories last: a read-only one would stop its own contents being written.
	for _, d := range dirs {
		if err := os.Lchown(d.path, d.h.Uid, d.h.Gid); err != nil {
			return err
		}
		if err := os.Chmod(d.path, fileMode(d.h.Mode)); err != nil {
			return err
		}
	}
	return nil
}

func fileMode(m int64) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

func jsonMarshal(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }
