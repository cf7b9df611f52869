package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// entry is one file system object of a layer.
type entry struct {
	typ      byte // tar.TypeReg, tar.TypeDir, tar.TypeSymlink
	mode     int64
	uid, gid int
	link     string // symlink target
	data     []byte // regular file contents
}

// tree is a layer's contents, keyed by clean relative path ("usr/bin/nsenter").
type tree map[string]*entry

// usrMerged rewrites a package path into Debian's merged-/usr layout (as debian:bookworm
// images have it): bin, sbin, lib* live under usr/ and the top-level names are symlinks.
func usrMerged(p string) string {
	top, rest, _ := strings.Cut(p, "/")
	switch top {
	case "bin", "sbin", "lib", "lib32", "lib64", "libx32":
		if rest == "" {
			return "usr/" + top
		}
		return "usr/" + top + "/" + rest
	}
	return p
}

func (t tree) dir(p string, mode int64, uid, gid int) {
	t.parents(p)
	t[p] = &entry{typ: tar.TypeDir, mode: mode, uid: uid, gid: gid}
}

func (t tree) file(p string, mode int64, data []byte) {
	t.parents(p)
	t[p] = &entry{typ: tar.TypeReg, mode: mode, data: data}
}

func (t tree) symlink(p, target string) {
	t.parents(p)
	t[p] = &entry{typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// parents adds the missing parent directories of p, root's and 0755.
func (t tree) parents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := t[d]; ok {
			continue
		}
		t[d] = &entry{typ: tar.TypeDir, mode: 0o755}
	}
}

// addDir copies the directory src (an unpacked package or build-static's root) into the
// tree. Only paths under one of include are taken (all when include is empty). Owners
// are root's, as in a package built with fakeroot; modes are kept but for the write bits
// of group and others on directories, which dpkg-deb -x keeps from the umask.
func (t tree) addDir(src string, include []string, merge bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(path.Base(rel), ".") && d.IsDir() && !strings.Contains(rel, "/") {
			return filepath.SkipDir // debs.sh's own .debs
		}
		if strings.HasPrefix(rel, ".") && !strings.Contains(rel, "/") {
			return nil // debs.sh's .version stamp
		}
		if len(include) > 0 && !slices.ContainsFunc(include, func(inc string) bool {
			return rel == inc || strings.HasPrefix(rel, inc+"/") || strings.HasPrefix(inc, rel+"/")
		}) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := rel
		if merge {
			dst = usrMerged(rel)
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.symlink(dst, target)
		case info.IsDir():
			if dst == "usr/bin" || dst == "usr/lib" || dst == "usr/sbin" || dst == "usr/lib64" {
				t.dir(dst, 0o755, 0, 0)
				return nil
			}
			if e, ok := t[dst]; ok && e.typ == tar.TypeDir {
				return nil // first package wins for shared directories
			}
			t.dir(dst, int64(info.Mode().Perm()|modeBits(info.Mode()))&^0o022, 0, 0)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			t.file(dst, int64(info.Mode().Perm()|modeBits(info.Mode())), data)
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, info.Mode().Type())
		}
		return nil
	})
}

// modeBits maps Go's setuid/setgid/sticky bits to their Unix values.
func modeBits(m fs.FileMode) fs.FileMode {
	var b fs.FileMode
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// layer writes the tree as a gzipped tar: entries sorted by path, every timestamp the
// given one, owners numeric with no names, so that the same tree gives the same bytes.
func (t tree) layer(mtime time.Time) (tarball []byte, gz []byte, err error) {
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := t[p]
		h := &tar.Header{
			Typeflag: e.typ, Name: p, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: mtime, Format: tar.FormatPAX,
		}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.link
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, nil, fmt.Errorf("tar %s: %w", p, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, nil, fmt.Errorf("tar %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}
	var zbuf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&zbuf, gzip.DefaultCompression)
	if err != nil {
		return nil, nil, err
	}
	if _, err := io.Copy(zw, bytes.NewReader(buf.Bytes())); err != nil {
		return nil, nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), zbuf.Bytes(), nil
}

// resolve follows symlinks inside the tree (absolute targets are relative to the
// image's root) and returns the path of the object p names, or ok=false.
func (t tree) resolve(p string) (string, bool) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	for hops := 0; hops < 40; hops++ {
		parts := strings.Split(p, "/")
		changed := false
		for i := range parts {
			prefix := strings.Join(parts[:i+1], "/")
			e, ok := t[prefix]
			if !ok {
				return "", false
			}
			if e.typ == tar.TypeSymlink {
				target := e.link
				if !strings.HasPrefix(target, "/") {
					target = path.Join(path.Dir(prefix), target)
				}
				rest := strings.Join(parts[i+1:], "/")
				p = strings.TrimPrefix(path.Clean("/"+path.Join(target, rest)), "/")
				changed = true
				break
			}
		}
		if !changed {
			return p, true
		}
	}
	return "", false
}
