package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/bootfleet/bootfleet/examples"
	"github.com/bootfleet/bootfleet/ignition"
	"github.com/bootfleet/bootfleet/profiles"
)

// builtinName is how the embedded example directory is named in messages.
const builtinName = "(built-in examples/lab)"

// profilesSource resolves the profiles directory: dir when it exists; the
// built-in example when dir is the default and absent; an error otherwise.
func profilesSource(dir string, explicit bool) (fsys fs.FS, name string, err error) {
	st, err := os.Stat(dir)
	switch {
	case err == nil && st.IsDir():
		return os.DirFS(dir), dir, nil
	case err == nil:
		return nil, "", fmt.Errorf("profiles %s: not a directory", dir)
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		return examples.Lab(), builtinName, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("profiles directory %s does not exist: create it (see examples/lab) or leave --profiles out to serve the built-in example", dir)
	default:
		return nil, "", fmt.Errorf("profiles %s: %w", dir, err)
	}
}

// loadChecked loads a profiles directory and checks that every template
// renders for every group using it, as serve does before serving it.
func loadChecked(fsys fs.FS, name string, opts ignition.Options) (*profiles.Set, *ignition.Renderer, error) {
	set, err := profiles.Load(fsys, name)
	if err != nil {
		return nil, nil, err
	}
	r, err := ignition.New(set, opts)
	if err != nil {
		return nil, nil, err
	}
	return set, r, nil
}

// printErrors writes a load error one problem per line.
func printErrors(w io.Writer, err error) {
	var list profiles.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}
