package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ContainerArchiveDir is where, under the data dir, the server keeps
// container image archives (docker save format) for air-gapped nodes.
const ContainerArchiveDir = "container-images"

// FindContainerArchive returns the archive in dir whose manifest tags the
// image ref (name:tag; a missing tag is latest; docker.io/library/ and
// localhost/ prefixes are ignored).
func FindContainerArchive(dir, ref string) (string, bool) {
	want := normalizeRef(ref)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".tar") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		tags, err := ArchiveTags(path)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(tags, func(t string) bool { return normalizeRef(t) == want }) {
			return path, true
		}
	}
	return "", false
}

func normalizeRef(ref string) string {
	for _, p := range []string{"docker.io/library/", "docker.io/", "localhost/"} {
		ref = strings.TrimPrefix(ref, p)
	}
	if i := strings.LastIndexByte(ref, ':'); i <= strings.LastIndexByte(ref, '/') {
		ref += ":latest"
	}
	return ref
}

// ArchiveTags reads the image tags from a docker save archive's
// manifest.json.
func ArchiveTags(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no manifest.json: not a docker save archive", path)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var manifest []struct {
			RepoTags []string `json:"RepoTags"`
		}
		if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&manifest); err != nil {
			return nil, fmt.Errorf("%s: manifest.json: %w", path, err)
		}
		var tags []string
		for _, m := range manifest {
			tags = append(tags, m.RepoTags...)
		}
		return tags, nil
	}
}

// ImageConfig is the runtime part of an image's configuration.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
}

// WriteDockerArchive writes a one-layer image in docker save format (what
// `docker load` and podman's compatible API take) from an uncompressed
// layer tar. The output is deterministic for the same inputs.
func WriteDockerArchive(w io.Writer, tag string, layer []byte, cfg ImageConfig) error {
	layerSum := sha256.Sum256(layer)
	diffID := "sha256:" + hex.EncodeToString(layerSum[:])
	created := time.Unix(0, 0).UTC()
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      created,
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history":      []map[string]any{{"created": created, "created_by": "bootfleet"}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	layerName := hex.EncodeToString(layerSum[:]) + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{tag}, "Layers": []string{layerName}}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: hex.EncodeToString(layerSum[:]) + "/", Mode: 0o755, ModTime: created, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{layerName, layer}, {configName, config}, {"manifest.json", manifest}} {
		if err := add(f.name, f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}
