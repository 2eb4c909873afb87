// Package registry records every machine bootfleet sees in etcd: its facts,
// the group and profile it matched, operator labels, its state and a
// bounded timeline of boot steps. Several bootfleet servers can share one
// etcd cluster; by default bootfleet runs an embedded etcd member in its
// data directory (see StartEmbedded).
//
// Profiles stay files; etcd holds only runtime state. Not-found is the one
// sentinel ErrNotFound, checked with errors.Is.
package registry
