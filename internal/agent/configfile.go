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
	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// configFieldNames are the config file's names for the library's fields.
var configFieldNames = map[string]string{
	"Domain": "domain", "TokenURL": "token_url", "ClientID": "client_id",
	"ClientSecret": "client_secret_env or client_secret_file",
	"AuthMethod":   "auth_method", "PrivateKey": "private_key_file", "KeyID": "key_id",
	"Audience": "audience", "Scopes": "scopes", "Organization": "organization",
	"DPoPKey": "dpop_key_file", "RequireDPoP": "require_dpop",
	"CAFile": "ca_file",
}

// fieldName names a Config field as the config file does, or "" for a
// field the file cannot set, so that the library leaves out advice to
// change it. The client secret is named by the field the source set it
// with.
func (fs *fileSource) fieldName(field string) string {
	switch {
	case field == "ClientSecret" && fs.ClientSecretEnv != "":
		return `"client_secret_env" (` + fs.ClientSecretEnv + `)`
	case field == "ClientSecret" && fs.ClientSecretFile != "":
		return `"client_secret_file"`
	}
	if n, ok := configFieldNames[field]; ok {
		return `"` + n + `"`
	}
	return ""
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
// so that a misspelt field is an error rather than a silent default.
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
	KeyID            string   `json:"key_id"`
	DPoPKeyFile      string   `json:"dpop_key_file"`
	RequireDPoP      bool     `json:"require_dpop"`
	CAFile           string   `json:"ca_file"`
	Cache            string   `json:"cache"`
	CacheDir         string   `json:"cache_dir"`

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
// of one client share a pool. Each Proxy's Origin names the file and the
// proxy.
func LoadConfigFile(path string, getenv func(string) string) ([]Source, []Proxy, error) {
	b, err := atomicfile.ReadTrusted(path, atomicfile.ConfigFileLimit, "the config file", configWriter)
	if err != nil {
		return nil, nil, fmt.Errorf("--config: %w", err)
	}
	sources, err := parseConfigFile(path, b, getenv)
	if err != nil {
		return nil, nil, err
	}
	proxies, err := parseConfigProxies(path, b)
	return sources, proxies, err
}

// parseConfigFile parses the config file's contents; getenv reads the
// environment variables the file names, and M2MTOKEN_CA_FILE: the CA of
// the sources that do not name one in "ca_file".
func parseConfigFile(path string, b []byte, getenv func(string) string) ([]Source, error) {
	var fc fileConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return nil, fmt.Errorf("config file %s: %s", path, jsonError(b, err, "the file's fields are", topFields))
	}
	if dec.More() {
		return nil, fmt.Errorf("config file %s: more than one JSON value; the file holds one object with a \"sources\" list", path)
	}
	if len(fc.Sources) == 0 {
		return nil, fmt.Errorf("config file %s: \"sources\" is empty or missing: list at least one source, such as {\"sources\": [{\"name\": \"default\", \"domain\": \"...\", \"client_id\": \"...\", \"client_secret_env\": \"...\", \"audience\": \"...\"}]}", path)
	}
	specs := make([]Source, 0, len(fc.Sources))
	seen := map[string]int{}
	for i, raw := range fc.Sources {
		var fs fileSource
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		where := fmt.Sprintf("config file %s: sources[%d]", path, i)
		if err := d.Decode(&fs); err != nil {
			return nil, fmt.Errorf("%s: %s", where, jsonError(nil, err, "a source's fields are", sourceFields))
		}
		if fs.Name == "" {
			return nil, fmt.Errorf("%s: \"name\" is missing: give each source a name (letters, digits, '.', '_', '-'); clients ask for /v1/token/NAME", where)
		}
		where = fmt.Sprintf("config file %s: source %q", path, fs.Name)
		if !sourceName.MatchString(fs.Name) {
			return nil, fmt.Errorf("%s: \"name\": use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", where)
		}
		if j, dup := seen[fs.Name]; dup {
			return nil, fmt.Errorf("%s: the name is used by sources[%d] too: names must be unique", where, j)
		}
		seen[fs.Name] = i
		cfg, err := fs.config(getenv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		cfg.FieldNames = fs.fieldName
		specs = append(specs, Source{Name: fs.Name, Origin: where, Config: cfg, Client: fs.client(), Warnings: fs.warnings()})
	}
	return specs, nil
}

// client names the source's client: every field but the name and the
// token request (audience, scopes, organization).
func (fs *fileSource) client() string {
	c := *fs
	c.Name, c.Audience, c.Scopes, c.Organization = "", "", nil, ""
	b, _ := json.Marshal(c)
	return string(b)
}

// config turns the file's fields into a Config.
func (fs *fileSource) config(getenv func(string) string) (m2mtoken.Config, error) {
	cfg := m2mtoken.Config{
		Domain: fs.Domain, TokenURL: fs.TokenURL, ClientID: fs.ClientID,
		Audience: fs.Audience, Scopes: fs.Scopes, Organization: fs.Organization,
	}
	if fs.ClientSecret != nil {
		return cfg, errors.New("\"client_secret\": a secret is never written in the config file: put it in an environment variable and name it in \"client_secret_env\", or in a file (mode 0600) named in \"client_secret_file\"")
	}
	if fs.ClientID == "" {
		return cfg, errors.New("\"client_id\" is missing: set it to the application's Client ID")
	}
	if fs.Domain == "" && fs.TokenURL == "" {
		return cfg, errors.New("no endpoint: set \"domain\" (such as \"tenant.eu.auth0.com\") or \"token_url\"")
	}
	if fs.ClientSecretEnv != "" && fs.ClientSecretFile != "" {
		return cfg, errors.New("\"client_secret_env\" and \"client_secret_file\" are both set: give one")
	}
	switch {
	case fs.ClientSecretEnv != "":
		cfg.ClientSecret = getenv(fs.ClientSecretEnv)
		if cfg.ClientSecret == "" {
			return cfg, fmt.Errorf("\"client_secret_env\": %s", unsetVariable(fs.ClientSecretEnv))
		}
	case fs.ClientSecretFile != "":
		s, err := readSecretFile(fs.ClientSecretFile)
		if err != nil {
			return cfg, fmt.Errorf("\"client_secret_file\": %w", err)
		}
		cfg.ClientSecret = s
	}
	if fs.KeyID != "" && fs.PrivateKeyFile == "" {
		return cfg, errors.New("\"key_id\" is set without \"private_key_file\"")
	}
	if fs.PrivateKeyFile != "" {
		if cfg.ClientSecret != "" {
			return cfg, errors.New("\"private_key_file\" and a client secret are both set: authenticate with one (remove client_secret_env or client_secret_file, or the key)")
		}
		key, err := m2mtoken.LoadPrivateKey(fs.PrivateKeyFile)
		if err != nil {
			return cfg, fmt.Errorf("\"private_key_file\": %s", strings.TrimPrefix(err.Error(), "m2mtoken: "))
		}
		cfg.PrivateKey, cfg.KeyID, cfg.AuthMethod = key, fs.KeyID, m2mtoken.PrivateKeyJWT
		if fs.AuthMethod != "" && fs.AuthMethod != "private_key_jwt" {
			return cfg, fmt.Errorf("\"auth_method\" %q with \"private_key_file\": a key means private_key_jwt; remove auth_method", fs.AuthMethod)
		}
	} else {
		if cfg.ClientSecret == "" {
			return cfg, errors.New("no credential: set \"client_secret_env\" (an environment variable that holds the secret), \"client_secret_file\", or \"private_key_file\"")
		}
		switch fs.AuthMethod {
		case "", "post", "client_secret_post":
		case "basic", "client_secret_basic":
			cfg.AuthMethod = m2mtoken.ClientSecretBasic
		default:
			return cfg, fmt.Errorf("\"auth_method\" %q: use \"post\" or \"basic\" (or give \"private_key_file\" for Private Key JWT)", fs.AuthMethod)
		}
	}
	if fs.DPoPKeyFile != "" {
		key, err := m2mtoken.LoadPrivateKey(fs.DPoPKeyFile)
		if err != nil {
			return cfg, fmt.Errorf("\"dpop_key_file\": %s", strings.TrimPrefix(err.Error(), "m2mtoken: "))
		}
		cfg.DPoPKey = key
	} else if fs.RequireDPoP {
		return cfg, errors.New("\"require_dpop\" is set without \"dpop_key_file\": give the key that binds the tokens")
	}
	cfg.RequireDPoP = fs.RequireDPoP
	cfg.CAFile = fs.CAFile
	if cfg.CAFile == "" {
		cfg.CAFile = getenv("M2MTOKEN_CA_FILE")
	}
	for _, s := range fs.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			return cfg, fmt.Errorf("\"scopes\": %q: give each scope as its own string, such as [\"read:x\", \"write:x\"]", s)
		}
	}
	cache, err := NewCache(fs.Cache, fs.CacheDir, `"cache"`, `"cache_dir"`)
	if err != nil {
		return cfg, err
	}
	cfg.Cache = cache
	return cfg, nil
}

// NewCache returns the cache a source asked for: memory (the source's own;
// "none" is its old name) or a file cache in dir (M2MTOKEN_CACHE_DIR, else
// the user cache directory, if empty).
// modeName and dirName are what the user calls the two settings.
func NewCache(mode, dir, modeName, dirName string) (m2mtoken.Cache, error) {
	switch mode {
	case "", "none", "memory":
		if dir != "" {
			return nil, fmt.Errorf("%s is set but %s is not \"file\": set %s to \"file\" to use it", dirName, modeName, modeName)
		}
		return nil, nil
	case "file":
		if dir == "" {
			dir = os.Getenv("M2MTOKEN_CACHE_DIR")
		}
		if dir == "" {
			d, err := m2mtoken.DefaultCacheDir()
			if err != nil {
				return nil, fmt.Errorf("%s \"file\": no user cache directory (%v): set %s", modeName, err, dirName)
			}
			dir = d
		}
		fc := m2mtoken.NewFileCache(dir)
		if err := fc.Check(); err != nil {
			return nil, fmt.Errorf("%s: %w", dirName, err)
		}
		return fc, nil
	}
	return nil, fmt.Errorf("%s %q: use \"memory\" (the default) or \"file\"", modeName, mode)
}

// readSecretFile reads a secret from a file, without its final newline.
func readSecretFile(path string) (string, error) {
	b, err := atomicfile.ReadLimited(path, atomicfile.SecretFileLimit, "a client secret file")
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// sourceFields are the fields a source may have, as the file spells them:
// fileSource's, but "client_secret", which is there to be refused.
var sourceFields = func() []string {
	var out []string
	t := reflect.TypeFor[fileSource]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "client_secret" {
			out = append(out, name)
		}
	}
	return out
}()

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
