// The agent's config file (--config): its sources, in JSON. The file is
// read with the standard library only; secrets come from the environment
// or from files, never from the config file itself.

package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/internal/settings"
	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// fileNames are the file's names for the settings (internal/settings)
// whose name is not their Key: the scopes are a list, and the secret is
// never in the file: an environment variable holds it, named in
// "client_secret_env" (or a file, named in "client_secret_file").
var fileNames = map[string]string{settings.Scope: "scopes", settings.ClientSecret: "client_secret_env"}

// fileField is the file's name for the setting env.
func fileField(env string) string {
	if n, ok := fileNames[env]; ok {
		return n
	}
	return settings.Key(env)
}

// name names a setting as the file does, for m2mtoken.ConfigFromLookup:
// the client secret by the field the source set it with, and the CA of a
// source that names none by the command's flag and variable.
func (fs *fileSource) name(env string) string {
	switch {
	case env == settings.ClientSecret && fs.ClientSecretEnv != "":
		return `"client_secret_env" (` + fs.ClientSecretEnv + `)`
	case env == settings.ClientSecret && fs.ClientSecretFile == "":
		return `"client_secret_file" or "client_secret_env" naming a variable`
	case env == settings.CAFile && fs.CAFile == "":
		return "--ca-file or " + settings.CAFile
	}
	return `"` + fileField(env) + `"`
}

// fileConfig is the agent's config file.
//
//	{"sources": [{"name": "billing", "domain": "tenant.eu.auth0.com",
//	  "client_id": "...", "client_secret_env": "BILLING_SECRET",
//	  "audience": "https://billing.example.com/"}]}
type fileConfig struct {
	Sources []json.RawMessage `json:"sources"`
	Proxies []json.RawMessage `json:"proxies"` // see configproxies.go
}

// fileSource is one source in the config file. Unknown fields are refused,
// so that a misspelt field is an error rather than a silent default. Its
// fields are the settings of internal/settings, each named as fileField
// says, and the file's own: name, cache and cache_dir.
type fileSource struct {
	Name             string   `json:"name"`
	Domain           string   `json:"domain"`
	TokenURL         string   `json:"token_url"`
	ClientID         string   `json:"client_id"`
	ClientSecretEnv  string   `json:"client_secret_env"`
	ClientSecretFile string   `json:"client_secret_file"`
	AuthMethod       string   `json:"auth_method"`
	Audience         string   `json:"audience"`
	Scopes           []string `json:"scopes"`
	Organization     string   `json:"organization"`
	PrivateKeyFile   string   `json:"private_key_file"`
	// ClientAssertionFile and ClientAssertionType are the platform's
	// client assertion and its type.
	ClientAssertionFile string `json:"client_assertion_file"`
	ClientAssertionType string `json:"client_assertion_type"`
	// ClientCertFile and ClientKeyFile are the client's TLS certificate
	// and key (mTLS).
	ClientCertFile string `json:"client_cert_file"`
	ClientKeyFile  string `json:"client_key_file"`
	MTLSTokenURL   string `json:"mtls_token_url"`
	KeyID          string `json:"key_id"`
	DPoPKeyFile    string `json:"dpop_key_file"`
	RequireDPoP    bool   `json:"require_dpop"`
	CAFile         string `json:"ca_file"`
	Cache          string `json:"cache"`
	CacheDir       string `json:"cache_dir"`

	// ClientSecret is refused: a secret never sits in the config file.
	ClientSecret json.RawMessage `json:"client_secret"`
}

// sourceName is what a source may be called: it appears in URL paths and
// flag values.
var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// configWriter says what whoever may write the config file could do.
const configWriter = "its writer could send the client secret to a server of their own (token_url)"

// LoadConfigFile reads the sources and proxies in the config file at
// path, which only the agent's user or root may write (see
// atomicfile.ReadTrusted). getenv reads the environment variables the
// file names, and M2MTOKEN_CA_FILE as the command sees it (--ca-file,
// else the variable): the CA of the sources that name none. Each Source's
// Origin names the file and the source, its Config's FieldNames name
// fields as the file does, and its Client is every field but the name and
// the token request (audience, scopes, organization), so that the sources
// of one client share a pool; what the file said of each source is kept
// (unexported) so that a reload tells the sources it changed (see
// Agent.Reload). Each Proxy's Origin names the file and the proxy.
func LoadConfigFile(path string, getenv func(string) string) ([]Source, []Proxy, error) {
	b, err := atomicfile.ReadTrusted(path, atomicfile.ConfigFileLimit, "the config file", configWriter)
	if err != nil {
		return nil, nil, fmt.Errorf("--config: %w", err)
	}
	return parseConfigFile(path, b, getenv)
}

// parseConfigFile parses the config file's contents, its sources and its
// proxies; getenv reads the environment variables the file names, and
// M2MTOKEN_CA_FILE: the CA of the sources that do not name one in
// "ca_file".
func parseConfigFile(path string, b []byte, getenv func(string) string) ([]Source, []Proxy, error) {
	var fc fileConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return nil, nil, fmt.Errorf("config file %s: %s", path, jsonError(b, err, "the file's fields are", topFields))
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("config file %s: more than one JSON value; the file holds one object with a \"sources\" list", path)
	}
	if _, err := dec.Token(); err != io.EOF { // a stray } or ] after the object
		return nil, nil, fmt.Errorf("config file %s: %s", path, jsonError(b, err, "the file's fields are", topFields))
	}
	if len(fc.Sources) == 0 {
		return nil, nil, fmt.Errorf("config file %s: \"sources\" is empty or missing: list at least one source, such as {\"sources\": [{\"name\": \"default\", \"domain\": \"...\", \"client_id\": \"...\", \"client_secret_env\": \"...\", \"audience\": \"...\"}]}", path)
	}
	specs := make([]Source, 0, len(fc.Sources))
	seen := map[string]int{}
	for i, raw := range fc.Sources {
		var fs fileSource
		where := fmt.Sprintf("config file %s: sources[%d]", path, i)
		if err := decodeStrict(raw, &fs); err != nil {
			return nil, nil, fmt.Errorf("%s: %s", where, jsonError(nil, err, "a source's fields are", sourceFields))
		}
		if fs.Name == "" {
			return nil, nil, fmt.Errorf("%s: \"name\" is missing: give each source a name (letters, digits, '.', '_', '-'); clients ask for /v1/token/NAME", where)
		}
		where = fmt.Sprintf("config file %s: source %q", path, fs.Name)
		if !sourceName.MatchString(fs.Name) {
			return nil, nil, fmt.Errorf("%s: \"name\": use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", where)
		}
		if j, dup := seen[fs.Name]; dup {
			return nil, nil, fmt.Errorf("%s: the name is used by sources[%d] too: names must be unique", where, j)
		}
		seen[fs.Name] = i
		cfg, warnings, err := fs.config(getenv)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s", where, strings.TrimPrefix(err.Error(), "m2mtoken: "))
		}
		client, outside, request := fs.identity(getenv)
		specs = append(specs, Source{Name: fs.Name, Origin: where, Config: cfg, Client: client, Warnings: warnings,
			pool: client + outside, key: client + outside + request})
	}
	proxies, err := parseConfigProxies(path, fc.Proxies)
	if err != nil {
		return nil, nil, err
	}
	return specs, proxies, nil
}

// decodeStrict decodes raw, one item of the file's lists, into v, refusing
// unknown fields.
func decodeStrict(raw json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// config turns the file's fields into a Config, through the library's
// parser of settings (m2mtoken.ConfigFromLookup), whose errors and
// FieldNames name the file's fields; and returns the warnings about the
// source's files.
func (fs *fileSource) config(getenv func(string) string) (m2mtoken.Config, []string, error) {
	if fs.ClientSecret != nil {
		return m2mtoken.Config{}, nil, errors.New("\"client_secret\": a secret is never written in the config file: put it in an environment variable and name it in \"client_secret_env\", or in a file (mode 0600) named in \"client_secret_file\"")
	}
	vals, err := fs.settings(getenv)
	if err != nil {
		return m2mtoken.Config{}, nil, err
	}
	lookup := func(env string) (string, bool) { v, ok := vals[env]; return v, ok }
	cfg, err := m2mtoken.ConfigFromLookup(lookup, fs.name)
	if err != nil {
		return cfg, nil, err
	}
	if cfg.Cache, err = NewCache(fs.Cache, fs.CacheDir, `"cache"`, `"cache_dir"`); err != nil {
		return cfg, nil, err
	}
	return cfg, settings.FileWarnings(lookup, fs.name), nil
}

// settings returns the source's settings, keyed by their variables as
// m2mtoken.ConfigFromLookup reads them: each field of fileSource that
// fileField names, a list joined with spaces, true as "true"; the secret
// read from the variable named in "client_secret_env"; and the CA of
// --ca-file or M2MTOKEN_CA_FILE (getenv) if the source names none.
func (fs *fileSource) settings(getenv func(string) string) (map[string]string, error) {
	byField := map[string]string{}
	for _, s := range settings.All() {
		byField[fileField(s.Env)] = s.Env
	}
	vals := map[string]string{}
	v := reflect.ValueOf(fs).Elem()
	for i := range v.NumField() {
		env, ok := byField[jsonName(v.Type().Field(i))]
		if !ok {
			continue
		}
		switch f := v.Field(i).Interface().(type) {
		case string:
			vals[env] = f
		case bool:
			if f {
				vals[env] = "true"
			}
		case []string:
			for _, s := range f {
				if s == "" || strings.ContainsAny(s, " \t\n") {
					return nil, fmt.Errorf("%s: %q: give each one as its own string, such as [\"read:x\", \"write:x\"]", fs.name(env), s)
				}
			}
			vals[env] = strings.Join(f, " ")
		}
	}
	if name := vals[settings.ClientSecret]; name != "" {
		if vals[settings.ClientSecret] = getenv(name); vals[settings.ClientSecret] == "" {
			return nil, fmt.Errorf("\"client_secret_env\": %s", unsetVariable(name))
		}
	}
	if vals[settings.CAFile] == "" {
		vals[settings.CAFile] = getenv(settings.CAFile)
	}
	return vals, nil
}

// NewCache returns the cache a source asked for: memory (the source's own;
// "none" is its old name) or a file cache (see FileCache). modeName and
// dirName are what the user calls the two settings.
func NewCache(mode, dir, modeName, dirName string) (m2mtoken.Cache, error) {
	switch mode {
	case "", "none", "memory":
		if dir != "" {
			return nil, fmt.Errorf("%s is set but %s is not \"file\": set %s to \"file\" to use it", dirName, modeName, modeName)
		}
		return nil, nil
	case "file":
		return FileCache(dir, dirName)
	}
	return nil, fmt.Errorf("%s %q: use \"memory\" (the default) or \"file\"", modeName, mode)
}

// FileCache returns the file cache in dir, else in M2MTOKEN_CACHE_DIR,
// else in the user cache directory's m2mtoken folder: the choice of every
// command and source that keeps tokens in files. dirName is what the user
// calls dir; an error names where the directory came from, and says why
// it may not be used (another user owns it, or others may write it).
func FileCache(dir, dirName string) (*m2mtoken.FileCache, error) {
	from := dirName
	if dir == "" {
		dir, from = os.Getenv("M2MTOKEN_CACHE_DIR"), "M2MTOKEN_CACHE_DIR"
	}
	if dir == "" {
		d, err := m2mtoken.DefaultCacheDir()
		if err != nil {
			return nil, fmt.Errorf("no user cache directory (%v): set %s or M2MTOKEN_CACHE_DIR", err, dirName)
		}
		dir, from = d, "the user cache directory (another is set with "+dirName+" or M2MTOKEN_CACHE_DIR)"
	}
	fc := m2mtoken.NewFileCache(dir)
	if err := fc.Check(); err != nil {
		return nil, fmt.Errorf("%s: %s", from, strings.TrimPrefix(err.Error(), "m2mtoken: "))
	}
	return fc, nil
}

// sourceFields are the fields a source may have, as the file spells them:
// fileSource's, but "client_secret", which is there to be refused.
var sourceFields = func() []string {
	var out []string
	t := reflect.TypeFor[fileSource]()
	for i := range t.NumField() {
		if name := jsonName(t.Field(i)); name != "" && name != "client_secret" {
			out = append(out, name)
		}
	}
	return out
}()

// jsonName is the name of f in the file, from its json tag.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// topFields are the fields of the file's top level.
var topFields = []string{"sources", "proxies"}

// jsonError describes a decoding error, with its line and column if b is
// the whole file; fields are the known fields, for an unknown one: the
// one it is a typo of, if any, and the list.
func jsonError(b []byte, err error, what string, fields []string) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := position(b, se.Offset)
		return fmt.Sprintf("line %d, column %d: %v", line, col, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "the top level"
		}
		msg := fmt.Sprintf("%q must be %s, not a JSON %s", field, jsonKind(te.Type.Kind().String()), te.Value)
		if b != nil {
			line, col := position(b, te.Offset)
			msg = fmt.Sprintf("line %d, column %d: %s", line, col, msg)
		}
		return msg
	case errors.Is(err, io.EOF):
		return "the file is empty: it holds one object with a \"sources\" list"
	case errors.Is(err, io.ErrUnexpectedEOF):
		line, col := position(b, int64(len(b)))
		return fmt.Sprintf("the JSON ends early, at line %d, column %d (was the file saved half-way, or is a closing } or ] missing?)", line, col)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		known := what + " " + strings.Join(fields, ", ")
		if meant := suggest.Nearest(name, fields); meant != "" {
			return fmt.Sprintf("unknown field %q: did you mean %q? (%s)", name, meant, known)
		}
		return fmt.Sprintf("unknown field %q: check its spelling (%s)", name, known)
	}
	return err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "a list"
	case "struct", "map":
		return "an object"
	}
	return "a " + k
}

// position turns a byte offset into a line and column, from 1.
func position(b []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(b)))
	before := b[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}
