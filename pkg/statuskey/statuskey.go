// Package statuskey reads and makes the keys that sign the webhook's
// status entries (see inject.Keys): a directory, as a mounted Secret
// gives it, whose file "current" signs and verifies and whose optional
// file "previous" still verifies during a rotation.
package statuskey

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// The files of a key directory, and the keys of the Secret it is mounted
// from.
const (
	Current  = "current"
	Previous = "previous"
)

// SecretName is the Secret the chart, the overlays and `make deploy`
// create and the webhook and the controller mount.
const SecretName = "sidecar-injector-status-key"

// Read reads the keys of dir: current, then previous if it is there.
// Surrounding white space is not part of a key.
func Read(dir string) (*inject.Keys, error) {
	current, err := readKey(filepath.Join(dir, Current))
	if err != nil {
		return nil, err
	}
	keys := [][]byte{current}
	switch previous, err := readKey(filepath.Join(dir, Previous)); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case len(previous) > 0:
		keys = append(keys, previous)
	}
	k, err := inject.NewKeys(keys...)
	if err != nil {
		return nil, fmt.Errorf("status keys in %s: %w", dir, err)
	}
	return k, nil
}

// FromSecret takes the keys of the Secret's data, as Read takes them
// from its files.
func FromSecret(data map[string][]byte) (*inject.Keys, error) {
	keys := [][]byte{bytes.TrimSpace(data[Current])}
	if previous := bytes.TrimSpace(data[Previous]); len(previous) > 0 {
		keys = append(keys, previous)
	}
	k, err := inject.NewKeys(keys...)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", SecretName, err)
	}
	return k, nil
}

func readKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the status key: %w", err)
	}
	return bytes.TrimSpace(data), nil
}

// New returns a random key: 64 hex digits of 32 random bytes.
func New() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return []byte(hex.EncodeToString(b))
}

// Write makes dir/current a new random key unless it exists, and returns
// dir/current.
func Write(dir string) (string, error) {
	path := filepath.Join(dir, Current)
	_, err := WriteFile(path)
	return path, err
}

// WriteFile writes a new random key to path unless a file is there: a key
// kept across runs keeps the Pods it signed verifiable. It reports
// whether it wrote one.
func WriteFile(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	return true, os.WriteFile(path, New(), 0o600)
}
