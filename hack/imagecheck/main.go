// Command imagecheck checks the Dockerfile without a Docker engine: it parses it with
// BuildKit's own parser, checks every instruction, and that the stages the docs name
// exist; with -rootfs DIR, that the build stage makes DIR with `make build-static` and
// every other named stage copies DIR into /. It is a separate module so BuildKit stays out of rebootgate's dependencies.
package main

import (
	"debug/elf"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	if err := check(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagecheck:", err)
		os.Exit(1)
	}
}

func check(args []string) error {
	if len(args) == 2 && args[0] == "-static" {
		return checkStatic(args[1])
	}
	rootfs := ""
	if len(args) >= 2 && args[0] == "-rootfs" {
		rootfs, args = strings.TrimSuffix(args[1], "/"), args[2:]
	}
	if len(args) < 1 {
		return fmt.Errorf("usage: imagecheck [-rootfs DIR] DOCKERFILE [STAGE...] | imagecheck -static BINARY")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	for _, w := range res.Warnings {
		return fmt.Errorf("%s:%d: %s", args[0], w.Location.Start.Line, w.Short)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	var names []string
	for _, s := range stages {
		names = append(names, s.Name)
	}
	for _, want := range args[1:] {
		if !slices.Contains(names, want) {
			return fmt.Errorf("%s: no stage %q (stages: %v)", args[0], want, names)
		}
	}
	if rootfs != "" {
		if err := checkRootfs(stages, args[1:], rootfs); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
	}
	fmt.Printf("%s: %d stages %v, syntax ok\n", args[0], len(stages), names)
	return nil
}

// checkRootfs checks that the stage "build" runs `make build-static STATIC_ROOT=rootfs`
// and that each other named stage copies rootfs/ from it into /: the image's files are
// what build-static makes, which `make image-check` checks.
func checkRootfs(stages []instructions.Stage, named []string, rootfs string) error {
	built := false
	copied := map[string]bool{}
	for _, st := range stages {
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.RunCommand:
				line := strings.Join(c.CmdLine, " ")
				if st.Name == "build" && strings.Contains(line, "make build-static") && strings.Contains(line, "STATIC_ROOT="+rootfs) {
					built = true
				}
			case *instructions.CopyCommand:
				if c.From == "build" && c.DestPath == "/" && slices.Equal(c.SourcePaths, []string{rootfs + "/"}) {
					copied[st.Name] = true
				}
			}
		}
	}
	if !built {
		return fmt.Errorf("stage build does not run make build-static STATIC_ROOT=%s", rootfs)
	}
	for _, name := range named {
		if name != "build" && !copied[name] {
			return fmt.Errorf("stage %s does not COPY --from=build %s/ /", name, rootfs)
		}
	}
	return nil
}

// checkStatic verifies that a binary is a static Linux executable: no program
// interpreter and no dynamic section, so it runs on distroless/static.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("%s: not static (has a %s program header)", path, p.Type)
		}
	}
	fmt.Printf("%s: static %s executable\n", path, f.Machine)
	return nil
}
