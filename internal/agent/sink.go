// File sinks: --sink NAME=PATH writes each new token of source NAME to
// PATH, for programs that can only read a file.

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"golang.org/x/oauth2"
)

// sinkSpec is one --sink.
type sinkSpec struct {
	source, path string
}

// checkSink checks s: its directory must exist, and be one that no other
// user may write.
func checkSink(s Sink) (sinkSpec, error) {
	if s.Source == "" || s.Path == "" {
		_, err := ParseSink(s.String()) // its error says what is missing
		return sinkSpec{}, err
	}
	v, name, path := s.String(), s.Source, s.Path
	abs, err := filepath.Abs(path)
	if err != nil {
		return sinkSpec{}, fmt.Errorf("--sink %q: %w", v, err)
	}
	info, err := os.Stat(filepath.Dir(abs))
	switch {
	case err != nil:
		return sinkSpec{}, fmt.Errorf("--sink %q: the directory %s must exist: %w", v, filepath.Dir(abs), err)
	case !info.IsDir():
		return sinkSpec{}, fmt.Errorf("--sink %q: %s is not a directory", v, filepath.Dir(abs))
	}
	// Another user who may write the directory could swap the sink for a
	// link, or read what a rename puts there.
	if err := atomicfile.CheckDir(filepath.Dir(abs)); err != nil {
		return sinkSpec{}, fmt.Errorf("--sink %q: %w", v, err)
	}
	if info, err := os.Stat(abs); err == nil && info.IsDir() {
		return sinkSpec{}, fmt.Errorf("--sink %q: %s is a directory: give a file name in it", v, abs)
	}
	return sinkSpec{source: name, path: abs}, nil
}

// writeSink writes the access token to path, alone and with no newline, so
// that "$(cat PATH)" and open(PATH).read() are the token. The file is
// replaced atomically (readers see the old token or the new one, never a
// part) and has mode 0600, or 0640 and group gid if gid is not -1.
func writeSink(path string, tok *oauth2.Token, gid int) error {
	return atomicfile.Write(path, "."+filepath.Base(path)+".tmp-*", []byte(tok.AccessToken), gid)
}

// writeSinks writes tok to every path, and returns the errors joined.
func writeSinks(paths []string, tok *oauth2.Token, gid int) error {
	var errs []error
	for _, p := range paths {
		if err := writeSink(p, tok, gid); err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
