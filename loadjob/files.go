package loadjob

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFiles writes a job's data files into a new scratch directory and
// returns it with a function that removes it.
func WriteFiles(files map[string]string) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", "bootfleet-loadjob-")
	if err != nil {
		return "", nil, fmt.Errorf("loadjob: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	for name, content := range files {
		if !safeFile.MatchString(name) {
			cleanup()
			return "", nil, fmt.Errorf("loadjob: data file %q: want a relative path", name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			cleanup()
			return "", nil, fmt.Errorf("loadjob: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			cleanup()
			return "", nil, fmt.Errorf("loadjob: %w", err)
		}
	}
	return dir, cleanup, nil
}
