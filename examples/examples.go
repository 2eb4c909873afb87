// Package examples embeds bootfleet's example profiles directories, so the
// binary can serve a working setup with no files around it.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed all:lab
var files embed.FS

// Lab returns the examples/lab profiles directory.
func Lab() fs.FS {
	sub, err := fs.Sub(files, "lab")
	if err != nil {
		panic(err) // "lab" is embedded above; this cannot fail
	}
	return sub
}
