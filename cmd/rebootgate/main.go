package main

import (
	_ "github.com/google/cel-go/cel"
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "github.com/open-policy-agent/opa/v1/tester"
	_ "github.com/robfig/cron/v3"
	_ "github.com/spf13/cobra"
	_ "k8s.io/apiserver/pkg/cel/library"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/kubectl/pkg/drain"
	_ "k8s.io/utils/clock"
	_ "sigs.k8s.io/yaml"
)

func main() {}
