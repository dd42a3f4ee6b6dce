// Package httpapi serves the DCV Connection Gateway's session resolver protocol
// (POST /resolveSession) from a resolve.Resolver, plus the daemon's operational endpoints.
package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/resolve"
)

// Resolver finds the host of a session; *resolve.Resolver is the real one.
type Resolver interface {
	Resolve(ctx context.Context, sessionID string) resolve.Result
}

// ResolvePath is where the gateway sends its requests.
const ResolvePath = "/resolveSession"

// Options tune the handler.
type Options struct {
	// RequestLog receives one line per resolve request at RequestLogLevel; nil discards them.
	// Busy gateways set the level below the logger's (e.g. debug under info) to keep it off.
	RequestLog      *zap.Logger
	RequestLogLevel zapcore.Level
	// Log receives refused clients and other warnings; nil discards them.
	Log *zap.Logger
	// AllowedClients, when not empty, lists the only peer addresses served; others get 403
	// before anything else happens.
	AllowedClients []netip.Prefix
	// Ready reports why the daemon is not ready to serve (nil when it is), for GET /readyz.
	// Nil means always ready.
	Ready func() error
	// Metrics counts requests by outcome and their latency; nil records nothing.
	Metrics *Metrics
}

// Handler answers the gateway protocol and the health endpoints. Create it with NewHandler.
type Handler struct {
	resolver Resolver
	reqLog   *zap.Logger
	reqLevel zapcore.Level
	log      *zap.Logger
	allowed  []netip.Prefix
	ready    func() error
	metrics  *Metrics
}

// NewHandler returns the handler for the resolver listener.
func NewHandler(res Resolver, opts Options) *Handler {
	if opts.RequestLog == nil {
		opts.RequestLog = zap.NewNop()
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Ready == nil {
		opts.Ready = func() error { return nil }
	}
	return &Handler{
		resolver: res, reqLog: opts.RequestLog, reqLevel: opts.RequestLogLevel, log: opts.Log,
		allowed: opts.AllowedClients, ready: opts.Ready, metrics: opts.Metrics,
	}
}

var (
	jsonContentType = []string{"application/json"}
	textContentType = []string{"text/plain; charset=utf-8"}
	nosniff         = []string{"nosniff"}
	allowPost       = []string{http.MethodPost}
)

// ServeHTTP checks the peer against the allow-list, then routes by path: the resolve
// endpoint, the health endpoints, or 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(h.allowed) > 0 && !h.allows(r.RemoteAddr) {
		writeText(w, http.StatusForbidden, "forbidden\n")
		h.metrics.forbidden()
		h.log.Warn("refused a client not in server.allowed-clients",
			zap.String("peer", r.RemoteAddr), zap.String("path", r.URL.Path))
		return
	}
	switch r.URL.Path {
	case ResolvePath:
		if r.Method != http.MethodPost {
			w.Header()["Allow"] = allowPost
			writeText(w, http.StatusMethodNotAllowed, "method not allowed: use POST\n")
			return
		}
		h.resolve(w, r)
	case HealthPath:
		health(w, r, nil)
	case ReadyPath:
		health(w, r, h.ready())
	default:
		writeText(w, http.StatusNotFound, "not found\n")
	}
}

// allows reports whether the TCP peer address is in the allow-list.
func (h *Handler) allows(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range h.allowed {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// request is a parsed, validated /resolveSession query.
type request struct {
	sessionID, transport, clientIP string
}

// parseRequest reads the query the gateway sends. It returns a short reason, fit for a 400
// body, when the request is malformed. A session ID that is present but can never exist is
// not an error here: it resolves to 404 like any unknown session.
func parseRequest(rawQuery string) (request, string) {
	var req request
	var haveSession, haveTransport, haveIP bool // first occurrence wins
	for q := rawQuery; q != ""; {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		var dst *string
		var have *bool
		switch k {
		case "sessionId":
			dst, have = &req.sessionID, &haveSession
		case "transport":
			dst, have = &req.transport, &haveTransport
		case "clientIpAddress":
			dst, have = &req.clientIP, &haveIP
		default:
			continue
		}
		if *have {
			continue // the first occurrence counts, as with url.Values.Get
		}
		*have = true
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return req, "malformed query string"
			}
			v = u
		}
		*dst = v
	}
	switch {
	case req.sessionID == "":
		return req, "missing sessionId"
	case req.transport != "HTTP" && req.transport != "QUIC":
		return req, "transport must be HTTP or QUIC"
	case req.clientIP != "": // absent or empty: the gateway did not know it
		if _, err := netip.ParseAddr(req.clientIP); err != nil {
			return req, "clientIpAddress is not an IP address"
		}
	}
	return req, ""
}

func (h *Handler) resolve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, bad := parseRequest(r.URL.RawQuery)
	if bad != "" {
		writeText(w, http.StatusBadRequest, bad+"\n")
		h.metrics.request(outcomeBadRequest, start)
		h.logRequest(req, "bad-request", http.StatusBadRequest, start, zap.String("reason", bad))
		return
	}
	res := h.resolver.Resolve(r.Context(), req.sessionID)
	if !res.Outcome.Found() {
		writeText(w, http.StatusNotFound, "session not found\n")
		h.metrics.request(outcomeNotFound, start)
		h.logRequest(req, res.Outcome.String(), http.StatusNotFound, start)
		return
	}
	t := res.Target
	sessionID := req.sessionID
	if t.ServerSessionID != "" {
		sessionID = t.ServerSessionID
	}
	bp := bufPool.Get().(*[]byte)
	b := appendResponse((*bp)[:0], sessionID, req.transport, t.Host, t.Port(req.transport), t.WebURLPath)
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	*bp = b
	bufPool.Put(bp)
	if res.Outcome == resolve.Hit {
		h.metrics.request(outcomeHit, start)
	} else {
		h.metrics.request(outcomeMissFound, start)
	}
	h.logRequest(req, res.Outcome.String(), http.StatusOK, start, zap.String("host", t.Host))
}

func (h *Handler) logRequest(req request, outcome string, status int, start time.Time, extra ...zap.Field) {
	ce := h.reqLog.Check(h.reqLevel, "resolve")
	if ce == nil {
		return
	}
	// Sized for the extra fields up front: appending them to a literal of six would allocate
	// twice (the literal, then a copy twice its size), and this runs for every request.
	fields := make([]zap.Field, 0, 6+len(extra))
	fields = append(fields,
		zap.String("session", req.sessionID),
		zap.String("transport", req.transport),
		zap.String("client_ip", req.clientIP),
		zap.String("outcome", outcome),
		zap.Int("status", status),
		zap.Duration("latency", time.Since(start)))
	ce.Write(append(fields, extra...)...)
}

func writeText(w http.ResponseWriter, status int, body string) {
	hdr := w.Header()
	hdr["Content-Type"] = textContentType
	hdr["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body) // http.response is a StringWriter: no copy
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// appendResponse appends the gateway's JSON answer, keys in the documented order.
func appendResponse(b []byte, sessionID, transport, host string, port uint16, path string) []byte {
	b = append(b, `{"SessionId":`...)
	b = appendJSONString(b, sessionID)
	b = append(b, `,"TransportProtocol":`...)
	b = appendJSONString(b, transport)
	b = append(b, `,"DcvServerEndpoint":`...)
	b = appendJSONString(b, host)
	b = append(b, `,"Port":`...)
	b = strconv.AppendUint(b, uint64(port), 10)
	b = append(b, `,"WebUrlPath":`...)
	b = appendJSONString(b, path)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping as encoding/json does (quotes,
// backslashes, control characters, <, >, & and the JavaScript line separators). Invalid UTF-8
// cannot reach it: session IDs, tags and file entries are validated first.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript; encoding/json escapes them.
		if c == 0xe2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9) {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[s[i+2]&0xf])
			i += 3
			start = i
			continue
		}
		i++
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
