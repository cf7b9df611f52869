// Package cli implements rebootgate's command line: each subcommand binds its flags to
// one options struct and calls into the engine. Errors carry an exit code: 2 for bad
// input (a file or field named in the message), 1 for anything else.
package cli
