// Package web serves the page tokend shows at /: it fetches a token from
// /token, shows what the token says, hands it to the Twilio Voice SDK's
// Device and refreshes it before it expires. The page and its bundle are
// built from web/ by `make web` into assets/ and embedded in the binary.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// TwilioConnectSrc are the hosts the Voice SDK connects to: signalling
// (wss), insights and its sounds (https).
var TwilioConnectSrc = []string{"https://*.twilio.com", "wss://*.twilio.com"}

// Options configures a page handler.
type Options struct {
	// ConnectSrc are origins the page may call besides its own and
	// Twilio's: the tokend it asks for tokens when that is on another
	// origin (the page's ?tokend= parameter).
	ConnectSrc []string
}

// Handler serves the page as tokend does: index.html at / and the bundle
// under /assets/, the page calling tokend on its own origin.
func Handler() http.Handler { return NewHandler(Options{}) }

type file struct {
	body        []byte
	contentType string
	etag        string
}

type handler struct {
	files map[string]file // by URL path
	csp   string
}

// NewHandler serves the page with o's Content-Security-Policy additions.
func NewHandler(o Options) http.Handler {
	h := &handler{files: map[string]file{}, csp: CSP(o.ConnectSrc...)}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		f := file{body: b, contentType: contentType(p), etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		h.files["/"+p] = f
		if p == "assets/index.html" {
			h.files["/"] = f
		}
		return nil
	})
	if err != nil {
		panic("web: embedded assets: " + err.Error()) // cannot happen: embed checked them at build time
	}
	return h
}

// CSP is the page's Content-Security-Policy: its own scripts and styles
// only, and connections to its own origin, Twilio and the extra origins.
func CSP(connectSrc ...string) string {
	connect := append([]string{"'self'"}, connectSrc...)
	connect = append(connect, TwilioConnectSrc...)
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data:",
		"connect-src " + strings.Join(connect, " "),
		"media-src 'self' blob: https://sdk.twilio.com",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", f.contentType)
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	// Asset names carry no hash: revalidate each time (cheap, by ETag).
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
