// Package profiles is bootfleet's YAML model: groups select machines by their
// facts (MAC, arch, firmware, UUID, hostname, labels) and point at profiles,
// which say what a machine boots and which Ignition or cloud-config template
// it receives.
//
// A profiles directory is loaded whole into an immutable [Set]. Every problem
// in it is reported at once as an [ErrorList] of "path:line:col: message"
// entries; nothing is served from a directory that does not load. A [Watcher]
// reloads the directory when it changes and keeps the last good Set when an
// edit is broken.
package profiles
