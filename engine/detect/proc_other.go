//go:build !unix

package detect

import "os/exec"

func setProcessGroup(*exec.Cmd) {}
