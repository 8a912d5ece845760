package catalog

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
)

// Store holds the catalog in force. Readers get it with Current; a Watcher
// swaps in each valid new version. The zero Store holds nothing.
type Store struct {
	current atomic.Pointer[Catalog]
}

// NewStore returns a Store holding c.
func NewStore(c *Catalog) *Store {
	s := &Store{}
	s.current.Store(c)
	return s
}

// Current returns the catalog in force, or nil before the first load.
func (s *Store) Current() *Catalog { return s.current.Load() }

// Set replaces the catalog in force.
func (s *Store) Set(c *Catalog) { s.current.Store(c) }

// Watcher reloads a catalog file or directory when it changes on disk,
// and logs each reload and each refused change.
type Watcher struct {
	Path  string
	Store *Store
	Log   logr.Logger
	// OnReload, when set, is called after every reload attempt with the
	// new catalog, or with the error that kept the old one in force.
	OnReload func(*Catalog, error)
	// Debounce groups the burst of events of one change. Defaulted to
	// 200ms if zero.
	Debounce time.Duration
}

// Run watches until ctx is done. It watches the directory (for a file, its
// parent), so editors' renames and a ConfigMap's ..data symlink swap are
// both seen; any event under it triggers a reload.
func (w *Watcher) Run(ctx context.Context) error {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fsw.Close()
	dir := w.Path
	if info, err := os.Stat(w.Path); err == nil && !info.IsDir() {
		dir = filepath.Dir(w.Path)
	}
	if err := fsw.Add(dir); err != nil {
		return err
	}
	debounce := w.Debounce
	if debounce == 0 {
		debounce = 200 * time.Millisecond
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(debounce)
		case err, ok := <-fsw.Errors:
			if !ok {
				return nil
			}
			w.report(nil, err)
		case <-timer.C:
			w.reload()
		}
	}
}

func (w *Watcher) reload() {
	c, err := Load(w.Path)
	if err == nil {
		if cur := w.Store.Current(); cur != nil && cur.Version == c.Version {
			return // touched, not changed
		}
		w.Store.Set(c)
	}
	w.report(c, err)
}

func (w *Watcher) report(c *Catalog, err error) {
	if err != nil {
		w.Log.Error(err, "Catalog change refused; the last good catalog stays in force", "path", w.Path, "version", w.Store.Current().Version)
	} else {
		w.Log.Info("Catalog reloaded", "path", w.Path, "version", c.Version, "templates", c.Names())
	}
	if w.OnReload != nil {
		w.OnReload(c, err)
	}
}
