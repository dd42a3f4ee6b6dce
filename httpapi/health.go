package httpapi

import (
	"net/http"
)

// The operational endpoints, served on the resolver listener. The gateway only ever POSTs
// ResolvePath, so they cannot clash with it.
const (
	// HealthPath answers 200 while the process is alive.
	HealthPath = "/healthz"
	// ReadyPath answers 200 once every configured source has loaded and none is too stale,
	// else 503 with the reason.
	ReadyPath = "/readyz"
)

func health(w http.ResponseWriter, r *http.Request, notReady error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = []string{"GET, HEAD"}
		writeText(w, http.StatusMethodNotAllowed, "method not allowed: use GET\n")
		return
	}
	if notReady != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+notReady.Error()+"\n")
		return
	}
	writeText(w, http.StatusOK, "ok\n")
}
