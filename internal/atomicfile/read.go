package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The most each kind of file read by the library and the command may
// hold. Each is far beyond any real file of its kind, so that only the
// wrong file (such as /dev/zero, or a log file named by mistake) is
// refused, before it can exhaust memory.
const (
	// SecretFileLimit bounds a file holding a client secret (Auth0's
	// are 64 characters).
	SecretFileLimit = 64 << 10
	// KeyFileLimit bounds a PEM private key (a 16,384-bit RSA key is
	// about 12 KiB).
	KeyFileLimit = 1 << 20
	// CAFileLimit bounds a PEM file of CA certificates (the whole
	// Mozilla bundle is about 220 KiB).
	CAFileLimit = 16 << 20
	// ConfigFileLimit bounds the agent's config file (a source takes
	// about 300 bytes).
	ConfigFileLimit = 16 << 20
)

// ReadLimited reads the file at path, which may hold at most limit bytes;
// what names the kind of file for errors ("a client secret file"). It
// follows symbolic links, and takes pipes and devices (such as a shell's
// <(...)), so that it reads what os.ReadFile reads, but never more than
// limit+1 bytes of it.
//
// Its errors name path only when path looks like a file's path
// ([LooksLikePath]): a value that does not may be the secret or the key
// itself, given where its file's path was wanted, and is not shown.
func ReadLimited(path string, limit int64, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, openError(path, err)
	}
	defer f.Close()
	return ReadOpened(f, path, limit, what)
}

// ReadOpened is [ReadLimited] for f, which the caller opened from path
// its own way (such as without following a link): it refuses more than
// limit bytes, with a [TooLargeError].
func ReadOpened(f *os.File, path string, limit int64, what string) ([]byte, error) {
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
		return nil, &TooLargeError{Path: path, Limit: limit, What: what}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{Path: path, Limit: limit, What: what}
	}
	return b, nil
}

// TooLargeError is a file that holds more than its kind of file may.
type TooLargeError struct {
	Path  string
	Limit int64
	What  string // the kind of file, such as "a client secret file"
}

// Error says which file, and the limit.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s holds more than %s, the most %s may hold: is it the right file?", e.Path, Size(e.Limit), e.What)
}

// Size writes n bytes as "64 KiB" or "16 MiB".
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// openError is err, from opening path, without path if it does not look
// like a file's path.
func openError(path string, err error) error {
	var pe *fs.PathError
	if LooksLikePath(path) || !errors.As(err, &pe) {
		return err
	}
	return &hiddenPathError{err: pe.Err}
}

// LooksLikePath reports whether s may be shown as a file's path in a
// message: it is absolute or has a "." (a file name's extension, or ./),
// and has no control character. A secret, a token or a PEM key given
// where a path was wanted fails (a PEM key has line breaks), and is then
// not shown; so does a relative path without a dot, which its user knows.
func LooksLikePath(s string) bool {
	return (filepath.IsAbs(s) || strings.Contains(s, ".")) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// hiddenPathError is an error opening a file whose name is not shown.
type hiddenPathError struct{ err error }

func (e *hiddenPathError) Error() string {
	return fmt.Sprintf("%v (the value is not shown: it does not look like a file's path; is it the secret or the key itself? give the file's path)", e.err)
}

func (e *hiddenPathError) Unwrap() error { return e.err }

// ReadableWarning returns a warning if the group or others may read the
// file at path, which holds a credential (a client secret or a private
// key) and is named by setting (a flag, variable or field), or "" if they
// may not. A readable file is not refused: Kubernetes mounts secrets with
// mode 0644 unless told otherwise.
func ReadableWarning(setting, path string) string {
	mode, ok := OthersMayRead(path)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s %s may be read by others (mode %04o): whoever can read it can get tokens as the client; run chmod 600 %s (in Kubernetes, set defaultMode: 0400 on the secret's volume)",
		setting, path, mode, path)
}
