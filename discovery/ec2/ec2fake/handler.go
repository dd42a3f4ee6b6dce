package ec2fake

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	apiVersion  = "2016-11-15"
	xmlNS       = "http://ec2.amazonaws.com/doc/" + apiVersion + "/"
	xmlHeader   = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"
	contentType = "text/xml;charset=UTF-8"

	// minMaxResults and maxMaxResults bound DescribeInstances MaxResults.
	minMaxResults = 5
	maxMaxResults = 1000

	// tokenPrefix marks the fake's NextToken values (before base64).
	tokenPrefix = "ec2fake/v1/"
)

// ServeHTTP answers one EC2 Query API request. To drop a connection (Abort,
// Hang, a client that went away, or a closed Server) it panics with
// http.ErrAbortHandler, which net/http handles quietly; do not wrap it in
// middleware that recovers panics. After Close every request is dropped.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.done:
		panic(http.ErrAbortHandler)
	default:
	}
	req, perr := parseRequest(r)
	reqID := s.newRequestID()

	s.mu.Lock()
	s.calls[req.Action]++
	if !s.noRecord {
		s.requests = append(s.requests, req)
	}
	var f *Fault
	if s.failN > 0 {
		s.failN--
		ff := s.failWith
		f = &ff
	}
	faultFn := s.fault
	s.mu.Unlock()
	if f == nil && faultFn != nil {
		f = faultFn(req.clone())
	}

	var out http.ResponseWriter = w
	var aw *abortWriter
	if f != nil {
		if f.Delay > 0 && !s.wait(r.Context(), f.Delay) {
			panic(http.ErrAbortHandler)
		}
		if f.Hang {
			s.wait(r.Context(), -1)
			panic(http.ErrAbortHandler)
		}
		if f.Abort {
			if f.AbortAfter <= 0 {
				panic(http.ErrAbortHandler)
			}
			aw = &abortWriter{ResponseWriter: w, left: f.AbortAfter}
			out = aw
		}
	}
	if lat := time.Duration(s.latency.Load()); lat > 0 && !s.wait(r.Context(), lat) {
		panic(http.ErrAbortHandler)
	}
	if f != nil && f.Code != "" {
		writeError(out, newAPIError(f.Status, f.Code, f.Message), reqID)
	} else {
		s.answer(out, req, perr, reqID)
	}
	if aw != nil {
		aw.abort()
	}
}

// answer writes the real response to req.
func (s *Server) answer(w http.ResponseWriter, req Request, perr *apiError, reqID string) {
	switch {
	case req.Region == "":
		writeError(w, newAPIError(http.StatusUnauthorized, "AuthFailure", ""), reqID)
	case req.Action == "":
		writeError(w, newAPIError(http.StatusBadRequest, "MissingAction", "The request must contain the parameter Action"), reqID)
	case req.Action != "DescribeInstances":
		writeError(w, newAPIError(http.StatusBadRequest, "InvalidAction",
			fmt.Sprintf("The action %s is not valid for this web service.", req.Action)), reqID)
	case perr != nil:
		writeError(w, perr, reqID)
	default:
		s.describeInstances(w, req, reqID)
	}
}

// wait blocks for d (forever if d < 0) and reports whether it ran to the
// end, rather than ending early because ctx ended or the server was closed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

func (s *Server) newRequestID() string {
	n := s.reqSeq.Add(1)
	return fmt.Sprintf("ec2fa4e0-0000-4000-8000-%012x", n)
}

// abortWriter passes the first left bytes of the body through, then drops
// the connection.
type abortWriter struct {
	http.ResponseWriter
	left int
}

func (a *abortWriter) Write(p []byte) (int, error) {
	if len(p) < a.left {
		a.left -= len(p)
		return a.ResponseWriter.Write(p)
	}
	_, _ = a.ResponseWriter.Write(p[:a.left])
	a.left = 0
	a.abort()
	return 0, nil // unreachable
}

// abort flushes what was written so far and drops the connection.
func (a *abortWriter) abort() {
	_ = http.NewResponseController(a.ResponseWriter).Flush()
	panic(http.ErrAbortHandler)
}

// regionOf returns the region of the SigV4 credential scope
// (Credential=AKID/20261124/us-east-1/ec2/aws4_request), from the
// Authorization header or a presigned URL's X-Amz-Credential.
func regionOf(r *http.Request) string {
	cred := ""
	if auth := r.Header.Get("Authorization"); auth != "" {
		if _, after, ok := strings.Cut(auth, "Credential="); ok {
			cred, _, _ = strings.Cut(after, ",")
			cred = strings.TrimSpace(cred)
		}
	} else {
		cred = r.URL.Query().Get("X-Amz-Credential")
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" {
		return ""
	}
	return parts[2]
}

// parseRequest reads the Query API parameters. The Request is always filled
// in as far as possible; the error, if any, is the one EC2 would answer for
// malformed DescribeInstances parameters.
func parseRequest(r *http.Request) (Request, *apiError) {
	req := Request{Region: regionOf(r)}
	if err := r.ParseForm(); err != nil {
		return req, newAPIError(http.StatusBadRequest, "MalformedQueryString", err.Error())
	}
	form := r.Form
	req.Action = form.Get("Action")
	var perr *apiError
	setErr := func(e *apiError) {
		if perr == nil {
			perr = e
		}
	}

	type indexed struct {
		n int
		v string
	}
	type filterParts struct {
		name    string
		hasName bool
		values  []indexed
	}
	filters := map[int]*filterParts{}
	var ids []indexed
	for key, vals := range form {
		if len(vals) == 0 {
			continue
		}
		v := vals[0]
		switch {
		case strings.HasPrefix(key, "Filter."):
			rest := key[len("Filter."):]
			num, field, _ := strings.Cut(rest, ".")
			n, err := strconv.Atoi(num)
			if err != nil || n < 1 {
				setErr(newAPIError(http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The parameter %s is not recognized", key)))
				continue
			}
			fp := filters[n]
			if fp == nil {
				fp = &filterParts{}
				filters[n] = fp
			}
			if field == "Name" {
				fp.name, fp.hasName = v, true
			} else if vnum, ok := strings.CutPrefix(field, "Value."); ok {
				m, err := strconv.Atoi(vnum)
				if err != nil || m < 1 {
					setErr(newAPIError(http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The parameter %s is not recognized", key)))
					continue
				}
				fp.values = append(fp.values, indexed{m, v})
			} else {
				setErr(newAPIError(http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The parameter %s is not recognized", key)))
			}
		case strings.HasPrefix(key, "InstanceId."):
			n, err := strconv.Atoi(key[len("InstanceId."):])
			if err != nil || n < 1 {
				setErr(newAPIError(http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The parameter %s is not recognized", key)))
				continue
			}
			ids = append(ids, indexed{n, v})
		case key == "MaxResults":
			n, err := strconv.Atoi(v)
			req.MaxResults = n
			if err != nil || n < minMaxResults || n > maxMaxResults {
				setErr(errInvalidParameterValue("Value ( %s ) for parameter maxResults is invalid. Expecting a value between %d and %d.",
					v, minMaxResults, maxMaxResults))
			}
		case key == "NextToken":
			req.NextToken = v
		case key == "DryRun":
			b, err := strconv.ParseBool(v)
			if err != nil {
				setErr(errInvalidParameterValue("Value (%s) for parameter dryRun is invalid. Expecting a boolean.", v))
			}
			req.DryRun = b
		}
	}

	byN := func(a, b indexed) int { return cmp.Compare(a.n, b.n) }
	if len(filters) > 0 {
		ns := make([]int, 0, len(filters))
		for n := range filters {
			ns = append(ns, n)
		}
		slices.Sort(ns)
		for _, n := range ns {
			fp := filters[n]
			if !fp.hasName {
				setErr(newAPIError(http.StatusBadRequest, "MissingParameter",
					fmt.Sprintf("The request must contain the parameter Filter.%d.Name", n)))
			}
			slices.SortFunc(fp.values, byN)
			f := Filter{Name: fp.name, Values: make([]string, len(fp.values))}
			for i, iv := range fp.values {
				f.Values[i] = iv.v
			}
			req.Filters = append(req.Filters, f)
		}
	}
	if len(ids) > 0 {
		slices.SortFunc(ids, byN)
		req.InstanceIDs = make([]string, len(ids))
		for i, iv := range ids {
			req.InstanceIDs[i] = iv.v
		}
	}
	return req, perr
}

func encodeToken(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tokenPrefix + lastID))
}

func decodeToken(tok string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", false
	}
	id, ok := strings.CutPrefix(string(b), tokenPrefix)
	return id, ok && id != ""
}

// describeInstances answers DescribeInstances.
func (s *Server) describeInstances(w http.ResponseWriter, req Request, reqID string) {
	match, aerr := compileFilters(req.Filters)
	if aerr != nil {
		writeError(w, aerr, reqID)
		return
	}
	if len(req.InstanceIDs) > 0 && req.MaxResults != 0 {
		writeError(w, newAPIError(http.StatusBadRequest, "InvalidParameterCombination",
			"The parameter instancesSet cannot be used with the parameter maxResults"), reqID)
		return
	}
	if req.DryRun {
		writeError(w, newAPIError(0, "DryRunOperation", ""), reqID)
		return
	}
	after := ""
	if req.NextToken != "" {
		var ok bool
		if after, ok = decodeToken(req.NextToken); !ok {
			writeError(w, newAPIError(http.StatusBadRequest, "InvalidNextToken", "The specified NextToken is not valid."), reqID)
			return
		}
	}
	page, next, aerr := s.query(req.Region, req.InstanceIDs, match, after, req.MaxResults)
	if aerr != nil {
		writeError(w, aerr, reqID)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Server", "AmazonEC2")
	_ = writeDescribeInstances(w, reqID, page, next)
}

// query selects one page of instances: those of region with an ID after
// after, matching match and, if ids is not empty, among ids. With max > 0 at
// most max are returned, and next is the token for the rest, if any.
func (s *Server) query(region string, ids []string, match func(*record) bool, after string, max int) (page []*record, next string, err *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.regions[region]

	if len(ids) > 0 {
		var missing []string
		recs := make([]*record, 0, len(ids))
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			var r *record
			if rs != nil {
				r = rs.byID[id]
			}
			if r == nil {
				missing = append(missing, id)
				continue
			}
			recs = append(recs, r)
		}
		switch len(missing) {
		case 0:
		case 1:
			return nil, "", newAPIError(http.StatusBadRequest, "InvalidInstanceID.NotFound",
				fmt.Sprintf("The instance ID '%s' does not exist", missing[0]))
		default:
			return nil, "", newAPIError(http.StatusBadRequest, "InvalidInstanceID.NotFound",
				fmt.Sprintf("The instance IDs '%s' do not exist", strings.Join(missing, ", ")))
		}
		slices.SortFunc(recs, func(a, b *record) int { return strings.Compare(a.ID, b.ID) })
		for _, r := range recs {
			if r.ID > after && match(r) {
				page = append(page, r)
			}
		}
		return page, "", nil
	}

	if rs == nil {
		return nil, "", nil
	}
	start := 0
	if after != "" {
		var found bool
		if start, found = rs.index(after); found {
			start++
		}
	}
	if max > 0 {
		page = make([]*record, 0, min(max, len(rs.sorted)-start))
	}
	for _, r := range rs.sorted[start:] {
		if !match(r) {
			continue
		}
		if max > 0 && len(page) == max {
			next = encodeToken(page[len(page)-1].ID)
			break
		}
		page = append(page, r)
	}
	return page, next, nil
}

// writeDescribeInstances streams the DescribeInstances response, one
// reservation per instance.
func writeDescribeInstances(w io.Writer, reqID string, page []*record, next string) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString(xmlHeader)
	bw.WriteString(`<DescribeInstancesResponse xmlns="` + xmlNS + `"><requestId>`)
	escape(bw, reqID)
	bw.WriteString(`</requestId><reservationSet>`)
	var num [20]byte
	for _, r := range page {
		bw.WriteString(`<item><reservationId>`)
		bw.WriteString(r.reservationID)
		bw.WriteString(`</reservationId><ownerId>` + OwnerID + `</ownerId><groupSet/><instancesSet><item><instanceId>`)
		escape(bw, r.ID)
		bw.WriteString(`</instanceId><instanceState><code>`)
		bw.Write(strconv.AppendInt(num[:0], int64(r.stateCode), 10))
		bw.WriteString(`</code><name>`)
		bw.WriteString(r.State)
		bw.WriteString(`</name></instanceState>`)
		// EC2 always sends both DNS names, empty when there is none.
		element(bw, "privateDnsName", r.PrivateDNS, true)
		element(bw, "dnsName", r.PublicDNS, true)
		element(bw, "privateIpAddress", r.PrivateIP, false)
		element(bw, "ipAddress", r.PublicIP, false)
		element(bw, "ipv6Address", r.IPv6, false)
		element(bw, "launchTime", r.launchTime, false)
		if len(r.tagKeys) > 0 {
			bw.WriteString(`<tagSet>`)
			for _, k := range r.tagKeys {
				bw.WriteString(`<item><key>`)
				escape(bw, k)
				bw.WriteString(`</key><value>`)
				escape(bw, r.Tags[k])
				bw.WriteString(`</value></item>`)
			}
			bw.WriteString(`</tagSet>`)
		}
		bw.WriteString(`</item></instancesSet></item>`)
	}
	bw.WriteString(`</reservationSet>`)
	element(bw, "nextToken", next, false)
	bw.WriteString(`</DescribeInstancesResponse>`)
	return bw.Flush()
}

// element writes <name>value</name>; an empty value is written as <name/>
// if always is set, and omitted otherwise.
func element(bw *bufio.Writer, name, value string, always bool) {
	if value == "" {
		if always {
			bw.WriteByte('<')
			bw.WriteString(name)
			bw.WriteString("/>")
		}
		return
	}
	bw.WriteByte('<')
	bw.WriteString(name)
	bw.WriteByte('>')
	escape(bw, value)
	bw.WriteString("</")
	bw.WriteString(name)
	bw.WriteByte('>')
}

// writeError writes an EC2 error response.
func writeError(w http.ResponseWriter, e *apiError, reqID string) {
	var b strings.Builder
	bw := bufio.NewWriter(&b)
	bw.WriteString(xmlHeader + `<Response><Errors><Error><Code>`)
	escape(bw, e.code)
	bw.WriteString(`</Code><Message>`)
	escape(bw, e.message)
	bw.WriteString(`</Message></Error></Errors><RequestID>`)
	escape(bw, reqID)
	bw.WriteString(`</RequestID></Response>`)
	_ = bw.Flush()

	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Server", "AmazonEC2")
	w.WriteHeader(e.status)
	_, _ = io.WriteString(w, b.String())
}

// escape writes s as XML character data, like encoding/xml.EscapeText:
// markup characters and tab/newline/carriage return become character
// references, and anything XML cannot carry (invalid UTF-8, most control
// characters) becomes U+FFFD.
func escape(bw *bufio.Writer, s string) {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		var esc string
		n := 1
		if c < utf8.RuneSelf {
			switch c {
			case '&':
				esc = "&amp;"
			case '<':
				esc = "&lt;"
			case '>':
				esc = "&gt;"
			case '"':
				esc = "&#34;"
			case '\'':
				esc = "&#39;"
			case '\t':
				esc = "&#x9;"
			case '\n':
				esc = "&#xA;"
			case '\r':
				esc = "&#xD;"
			default:
				if c < 0x20 {
					esc = "\uFFFD"
				}
			}
		} else {
			var r rune
			r, n = utf8.DecodeRuneInString(s[i:])
			if (r == utf8.RuneError && n == 1) || !isXMLChar(r) {
				esc = "\uFFFD"
			}
		}
		if esc == "" {
			i += n
			continue
		}
		bw.WriteString(s[last:i])
		bw.WriteString(esc)
		i += n
		last = i
	}
	bw.WriteString(s[last:])
}

// isXMLChar reports whether a non-ASCII rune may appear in an XML document.
func isXMLChar(r rune) bool {
	return (r >= 0x80 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}
