package ec2fake

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// compileFilters returns a predicate that is true for records matching every
// filter (AND) and, within a filter, any of its values (OR).
func compileFilters(filters []Filter) (func(*record) bool, *apiError) {
	preds := make([]func(*record) bool, 0, len(filters))
	for _, f := range filters {
		p, err := compileFilter(f)
		if err != nil {
			return nil, err
		}
		preds = append(preds, p)
	}
	return func(r *record) bool {
		for _, p := range preds {
			if !p(r) {
				return false
			}
		}
		return true
	}, nil
}

func compileFilter(f Filter) (func(*record) bool, *apiError) {
	var field func(*record) string
	switch f.Name {
	case "instance-id":
		field = func(r *record) string { return r.ID }
	case "instance-state-name":
		field = func(r *record) string { return r.State }
	case "instance-state-code":
		field = func(r *record) string { return strconv.Itoa(r.stateCode) }
	case "private-dns-name":
		field = func(r *record) string { return r.PrivateDNS }
	case "dns-name":
		field = func(r *record) string { return r.PublicDNS }
	case "private-ip-address":
		field = func(r *record) string { return r.PrivateIP }
	case "ip-address":
		field = func(r *record) string { return r.PublicIP }
	case "tag-key", "tag-value":
	default:
		if !strings.HasPrefix(f.Name, "tag:") {
			return nil, errInvalidParameterValue("The filter '%s' is invalid", f.Name)
		}
	}
	if len(f.Values) == 0 {
		return nil, newAPIError(http.StatusBadRequest, "InvalidParameterValue",
			fmt.Sprintf("The filter '%s' has no values", f.Name))
	}
	pats := make([]pattern, len(f.Values))
	for i, v := range f.Values {
		pats[i] = compilePattern(v)
	}
	anyMatch := func(s string) bool {
		for i := range pats {
			if pats[i].match(s) {
				return true
			}
		}
		return false
	}

	switch {
	case field != nil:
		// An attribute the instance does not have matches nothing.
		return func(r *record) bool {
			v := field(r)
			return v != "" && anyMatch(v)
		}, nil
	case f.Name == "tag-key":
		return func(r *record) bool {
			for _, k := range r.tagKeys {
				if anyMatch(k) {
					return true
				}
			}
			return false
		}, nil
	case f.Name == "tag-value":
		return func(r *record) bool {
			for _, k := range r.tagKeys {
				if anyMatch(r.Tags[k]) {
					return true
				}
			}
			return false
		}, nil
	default: // tag:<key>
		key := f.Name[len("tag:"):]
		return func(r *record) bool {
			v, ok := r.Tags[key]
			return ok && anyMatch(v)
		}, nil
	}
}

// pattern is an EC2 filter value: "*" matches any run of characters
// (including none), "?" exactly one character, and a backslash makes the
// next character literal ("\*", "\?", "\\"); a trailing backslash is literal.
// Matching is case-sensitive.
type pattern struct {
	literal bool   // no wildcards: compare with lit
	lit     string // the unescaped value, if literal
	elems   []patElem
}

type patKind uint8

const (
	patLit  patKind = iota // match s exactly
	patOne                 // "?": any one character
	patStar                // "*": any run of characters
)

type patElem struct {
	kind patKind
	s    string
}

func compilePattern(v string) pattern {
	var elems []patElem
	var lit strings.Builder
	wild := false
	flush := func() {
		if lit.Len() > 0 {
			elems = append(elems, patElem{kind: patLit, s: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			if i+1 < len(v) {
				_, n := utf8.DecodeRuneInString(v[i+1:])
				lit.WriteString(v[i+1 : i+1+n])
				i += n
			} else {
				lit.WriteByte('\\')
			}
		case '*':
			wild = true
			flush()
			if len(elems) == 0 || elems[len(elems)-1].kind != patStar {
				elems = append(elems, patElem{kind: patStar})
			}
		case '?':
			wild = true
			flush()
			elems = append(elems, patElem{kind: patOne})
		default:
			lit.WriteByte(c)
		}
	}
	if !wild {
		return pattern{literal: true, lit: lit.String()}
	}
	flush()
	return pattern{elems: elems}
}

// match reports whether s matches the whole pattern. It backtracks only to
// the most recent "*", which is enough because every other element has a
// fixed length.
func (p *pattern) match(s string) bool {
	if p.literal {
		return s == p.lit
	}
	elems := p.elems
	pi, si := 0, 0
	starPi, starSi := -1, 0
	for {
		if pi < len(elems) {
			switch e := elems[pi]; e.kind {
			case patStar:
				starPi, starSi = pi, si
				pi++
				continue
			case patOne:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					si += n
					pi++
					continue
				}
			case patLit:
				if strings.HasPrefix(s[si:], e.s) {
					si += len(e.s)
					pi++
					continue
				}
			}
		} else if si == len(s) {
			return true
		}
		// Mismatch: let the last "*" swallow one more character.
		if starPi < 0 || starSi >= len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starSi:])
		starSi += n
		pi, si = starPi+1, starSi
	}
}
