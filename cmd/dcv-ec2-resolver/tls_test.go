package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA issues certificates for loopback, for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key signed by the CA.
func (ca *testCA) issue(t *testing.T, cn string, serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func tlsClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12},
	}}
}

func TestDaemonMutualTLSAndCertificateReload(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	srvCert, srvKey := serverCA.issue(t, "resolver", 2, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := clientCA.issue(t, "gateway", 3, x509.ExtKeyUsageClientAuth)
	files := map[string]string{
		"server.pem": string(srvCert), "server.key": string(srvKey), "client-ca.pem": string(clientCA.pem),
		"s.toml": "[sessions.s1]\nhost = \"localhost\"\n",
	}
	td := startDaemon(t, `
[server]
listen = "127.0.0.1:0"
tls-cert-file = "server.pem"
tls-key-file = "server.key"
client-ca-file = "client-ca.pem"
[file]
path = "s.toml"
`, files)

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	gatewayCert, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	gateway := tlsClient(roots, gatewayCert)
	if code, _ := resolveReq(t, gateway, td.url, "s1", "HTTP"); code != 200 {
		t.Fatalf("gateway with a client certificate: %d", code)
	}

	// No client certificate, or one from another CA: the handshake fails.
	if _, err := tlsClient(roots).Post(td.url+"/resolveSession?sessionId=s1&transport=HTTP", "", nil); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	strangerCert, strangerKey := serverCA.issue(t, "stranger", 4, x509.ExtKeyUsageClientAuth)
	stranger, _ := tls.X509KeyPair(strangerCert, strangerKey)
	if _, err := tlsClient(roots, stranger).Post(td.url+"/resolveSession?sessionId=s1&transport=HTTP", "", nil); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	// TLS 1.1 is refused.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		Certificates: []tls.Certificate{gatewayCert}, MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Get(td.url + "/healthz"); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}

	// A renewed certificate is served after SIGHUP, without a restart.
	newCert, newKey := serverCA.issue(t, "resolver", 99, x509.ExtKeyUsageServerAuth)
	dir := filepath.Dir(td.path)
	if err := os.WriteFile(filepath.Join(dir, "server.pem"), newCert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(td.path)
	td.rewrite(string(data))
	conn, err := tls.Dial("tcp", td.listener.Addr().String(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{gatewayCert}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 99 {
		t.Fatalf("served certificate serial %d after reload, want the renewed 99", serial)
	}

	// A broken certificate file is refused; the current certificate stays.
	if err := os.WriteFile(filepath.Join(dir, "server.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	td.rewrite(string(data))
	if code, _ := resolveReq(t, gateway, td.url, "s1", "HTTP"); code != 200 {
		t.Fatalf("after a broken certificate file: %d", code)
	}
}
