// Package footprint keeps an idle agent's resident memory small once it has started.
//
// Most of a Go binary's resident set is not its heap but the pages of its own
// executable that it has touched: start-up runs every package's initialiser, the
// flag parser, the Rego and CEL compilers and the informers' first list, code that
// an idle agent never runs again. Linux keeps those pages mapped until memory runs
// short, and on kernels that cache files in large folios (ext4 and XFS on recent
// kernels) touching one byte maps the whole folio, up to 2 MiB. Release drops the
// process's mappings of its executable's read-only pages (they stay in the page
// cache; whatever runs next faults back in what it needs) and returns the heap
// freed by start-up to the operating system.
package footprint
