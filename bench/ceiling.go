package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/httpapi"
)

// ceilingBody is the ceiling's constant answer, the size of a typical resolver answer.
var ceilingBody = []byte(`{"SessionId":"sess-12345","TransportProtocol":"QUIC","DcvServerEndpoint":"ip-10-0-48-57.ec2.internal","Port":8443,"WebUrlPath":"/"}`)

// serveCeiling is the "ceiling" role: the least a net/http server can do for the gateway. It
// answers every request with a constant JSON body and the resolver's headers, through an
// http.Server with the resolver's limits (httpapi.NewServer with the default configuration),
// so that the resolver's throughput can be read against what net/http allows on the same
// machine. args: [cert-file key-file] for TLS. It prints its address, then serves until its
// parent goes away.
func serveCeiling(args []string) int {
	exitWithParent()
	contentType, nosniff := []string{"application/json"}, []string{"nosniff"}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = contentType
		hdr["X-Content-Type-Options"] = nosniff
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(ceilingBody)
	})
	cfg := httpapi.DefaultServerConfig()
	cfg.Listen = "127.0.0.1:0"
	srv := httpapi.NewServer(cfg, h, nil)
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		return 1
	}
	fmt.Println(l.Addr())
	if len(args) == 2 {
		cert, err := tls.LoadX509KeyPair(args[0], args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "ceiling:", err)
			return 1
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		err = srv.ServeTLS(l, "", "")
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		return 1
	}
	err = srv.Serve(l)
	fmt.Fprintln(os.Stderr, "ceiling:", err)
	return 1
}
