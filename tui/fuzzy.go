package tui

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// fuzzyScore tells whether every rune of pattern appears in s in order
// (case-insensitive), and how well: consecutive runes and runes at the
// start of a word ("web-7d9c" matches "w7" at both word starts) score
// higher, gaps lower. An empty pattern matches everything with score 0.
func fuzzyScore(pattern, s string) (int, bool) {
	if pattern == "" {
		return 0, true
	}
	p := strings.ToLower(pattern)
	t := strings.ToLower(s)
	score, last := 0, -1
	pi := 0
	pr, psize := utf8.DecodeRuneInString(p)
	for i, r := range t {
		if r != pr {
			continue
		}
		switch {
		case last >= 0 && i == last+utf8.RuneLen(r):
			score += 8 // consecutive
		case i == 0 || strings.ContainsRune(" -_./:", rune(t[i-1])):
			score += 6 // start of a word
		default:
			score++
		}
		if last >= 0 {
			score -= min(i-last-1, 4) / 2
		}
		last = i
		pi += psize
		if pi >= len(p) {
			// Shorter candidates win ties: "web" over "web-canary".
			return score*64 - min(len(t), 63), true
		}
		pr, psize = utf8.DecodeRuneInString(p[pi:])
	}
	return 0, false
}

// fuzzyFilter returns the indices of the candidates matching pattern, best
// first (in their order when pattern is empty).
func fuzzyFilter(pattern string, candidates []string) []int {
	type hit struct{ i, score int }
	hits := make([]hit, 0, len(candidates))
	for i, c := range candidates {
		if s, ok := fuzzyScore(pattern, c); ok {
			hits = append(hits, hit{i, s})
		}
	}
	if pattern != "" {
		sort.SliceStable(hits, func(a, b int) bool { return hits[a].score > hits[b].score })
	}
	out := make([]int, len(hits))
	for i, h := range hits {
		out[i] = h.i
	}
	return out
}
