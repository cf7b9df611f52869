// Package policies holds rebootgate's default gate, written in Rego v1, with its tests
// and the JSON Schema of its input. The gate is embedded in the binary; stock `opa test`
// runs the same files unchanged.
package policies

import "embed"

//go:embed gate.rego
var files embed.FS

// DefaultGate returns the default gate's modules by file name.
func DefaultGate() map[string]string {
	out := map[string]string{}
	for _, name := range []string{"gate.rego"} {
		data, err := files.ReadFile(name)
		if err != nil {
			panic(err) // embedded at build time; cannot fail
		}
		out["policies/"+name] = string(data)
	}
	return out
}

// InputSchema returns the JSON Schema of the input document.
func InputSchema() []byte { return schema }

//go:embed input.schema.json
var schema []byte
