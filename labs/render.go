package labs

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/mattn/go-runewidth"
	"golang.org/x/term"
)

// DefaultLang is the language of the user's locale: zh when LC_ALL,
// LC_MESSAGES or LANG (the first one set) starts with zh, else en.
func DefaultLang() string {
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if s := os.Getenv(v); s != "" {
			if strings.HasPrefix(strings.ToLower(s), "zh") {
				return "zh"
			}
			return "en"
		}
	}
	return "en"
}

// CheckLang validates a --lang value.
func CheckLang(lang string) error {
	if lang != "en" && lang != "zh" {
		return fmt.Errorf("--lang %s: use en or zh", lang)
	}
	return nil
}

// messages are the runner's own words.
var messages = map[string]map[string]string{
	"en": {
		"lab":         "Lab",
		"step":        "step %d of %d",
		"check":       "check:",
		"hint":        "hint:",
		"untilStep":   "restored when this step is done",
		"untilEnd":    "restored when the lab ends",
		"complete":    "lab %s complete: all %d steps passed",
		"stopped":     "lab %s stopped at step %d of %d (%s)",
		"checkNext":   "run the commands above, then: klab lab check",
		"press":       "run the commands above in another terminal, then press Enter to check (q quits): ",
		"cluster":     "cluster %s — the commands act on it: export KLAB_CLUSTER=%s",
		"cleanup":     "clearing what an earlier run of this lab left",
		"stepPassed":  "step %d passed",
		"commandFail": "the command exited %d",
		"commandOK":   "the command was expected to fail, but it succeeded",
		"checks":      "checks:",
		"commands":    "commands:",
		"faults":      "faults:",
		"cmdCheck":    "these commands ran:",
	},
	"zh": {
		"lab":         "实验",
		"step":        "第 %d 步，共 %d 步",
		"check":       "检查：",
		"hint":        "提示：",
		"untilStep":   "本步完成后恢复",
		"untilEnd":    "实验结束时恢复",
		"complete":    "实验 %s 完成：%d 步全部通过",
		"stopped":     "实验 %s 停在第 %d 步（共 %d 步）：%s",
		"checkNext":   "运行上面的命令，然后执行：klab lab check",
		"press":       "在另一个终端运行上面的命令，然后按回车检查（q 退出）：",
		"cluster":     "集群 %s —— 命令作用于它：export KLAB_CLUSTER=%s",
		"cleanup":     "清理此实验上次运行留下的东西",
		"stepPassed":  "第 %d 步通过",
		"commandFail": "命令退出码为 %d",
		"commandOK":   "命令本应失败，却成功了",
		"checks":      "检查：",
		"commands":    "命令：",
		"faults":      "故障：",
		"cmdCheck":    "运行了这些命令：",
	},
}

// printer writes what a student sees, in one language, with colour only
// on a terminal and never with NO_COLOR set.
type printer struct {
	w      io.Writer
	lang   string
	colour bool
	width  int
}

func newPrinter(w io.Writer, lang string) *printer {
	p := &printer{w: w, lang: lang, width: 80}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		_, noColour := os.LookupEnv("NO_COLOR")
		p.colour = !noColour
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w >= 40 {
			p.width = min(w, 100)
		}
	}
	return p
}

func (p *printer) msg(key string, args ...any) string {
	return fmt.Sprintf(messages[p.lang][key], args...)
}

func (p *printer) sgr(code, s string) string {
	if !p.colour {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p *printer) bold(s string) string  { return p.sgr("1", s) }
func (p *printer) dim(s string) string   { return p.sgr("2", s) }
func (p *printer) green(s string) string { return p.sgr("32", s) }
func (p *printer) red(s string) string   { return p.sgr("31", s) }
func (p *printer) cyan(s string) string  { return p.sgr("36", s) }

func (p *printer) printf(format string, args ...any) { fmt.Fprintf(p.w, format, args...) }

// pad fills s with spaces to n columns (CJK characters count as two).
func pad(s string, n int) string {
	if w := runewidth.StringWidth(s); w < n {
		return s + strings.Repeat(" ", n-w)
	}
	return s
}

// header prints "Lab 8 · VXLAN mode …     step 3 of 6".
func (p *printer) header(l *Lab, step int) {
	left := p.msg("lab") + " " + l.ID
	if l.Number > 0 {
		left = fmt.Sprintf("%s %d", p.msg("lab"), l.Number)
	}
	left += " · " + l.Title.In(p.lang)
	right := p.msg("step", step+1, len(l.Steps))
	gap := max(p.width-runewidth.StringWidth(left)-runewidth.StringWidth(right), 2)
	p.printf("\n%s%s%s\n", p.bold(left), strings.Repeat(" ", gap), p.dim(right))
}

// step prints a step's title and explanation.
func (p *printer) step(l *Lab, i int) {
	s := l.Steps[i]
	p.header(l, i)
	p.printf("%s\n", p.bold(s.Title.In(p.lang)))
	p.markdown(s.Text.In(p.lang))
}

var (
	boldRE    = regexp.MustCompile(`\*\*([^*]+)\*\*`)
	headingRE = regexp.MustCompile(`^#{1,6}\s+`)
)

// markdown prints a lab's markdown for a terminal: headings and **bold**
// in bold, fenced code indented, the rest as written.
func (p *printer) markdown(text string) {
	inCode := false
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
			continue
		}
		switch {
		case inCode:
			p.printf("    %s\n", p.cyan(line))
		case headingRE.MatchString(line):
			p.printf("%s\n", p.bold(headingRE.ReplaceAllString(line, "")))
		default:
			p.printf("%s\n", boldRE.ReplaceAllStringFunc(line, func(m string) string {
				return p.bold(boldRE.FindStringSubmatch(m)[1])
			}))
		}
	}
}

// command prints "$ command", continuation lines indented.
func (p *printer) command(run string) {
	lines := strings.Split(strings.TrimRight(run, "\n"), "\n")
	p.printf("%s %s\n", p.dim("$"), p.bold(lines[0]))
	for _, l := range lines[1:] {
		p.printf("  %s\n", l)
	}
}

// output prints what a command printed, indented.
func (p *printer) output(out string) {
	out = strings.TrimRight(out, "\n")
	if out == "" {
		return
	}
	for _, l := range strings.Split(out, "\n") {
		p.printf("  %s\n", p.dim(l))
	}
}

const titleColumn = 50

// checkLine prints " ✓ title   check: subject" or " ✗ title   hint: …".
func (p *printer) checkLine(c *Check, err error) {
	title := c.Title.In(p.lang)
	if err == nil {
		p.printf(" %s %s %s\n", p.green("✓"), pad(title, titleColumn), p.dim(p.msg("check")+" "+c.Subject()))
		return
	}
	p.printf(" %s %s %s\n", p.red("✗"), pad(title, titleColumn), p.msg("hint")+" "+c.Hint.In(p.lang))
	p.printf("   %s\n", p.dim(err.Error()))
}

// fault prints a fault being applied.
func (p *printer) fault(a *Applied) {
	until := p.msg("untilStep")
	if a.Until == "end" {
		until = p.msg("untilEnd")
	}
	p.printf(" %s %s %s\n", p.red("⚡"), a.Describe(p.lang), p.dim("("+until+")"))
}

// Show prints a whole lab: what it teaches, the cluster it needs, and
// every step's explanation, faults, commands and checks.
func Show(w io.Writer, l *Lab, lang string) {
	p := newPrinter(w, lang)
	title := p.msg("lab") + " " + l.ID
	if l.Number > 0 {
		title = fmt.Sprintf("%s %d (%s)", p.msg("lab"), l.Number, l.ID)
	}
	p.printf("%s · %s\n%s\n%s\n", p.bold(title), p.bold(l.Title.In(lang)), l.Summary.In(lang), p.dim(l.Cluster.Shape()+", provider "+l.Cluster.Provider))
	for i := range l.Steps {
		s := &l.Steps[i]
		p.step(l, i)
		if len(s.Faults) > 0 {
			p.printf("%s\n", p.dim(p.msg("faults")))
			for j := range s.Faults {
				p.printf(" %s %s\n", p.red("⚡"), s.Faults[j].Describe(lang))
			}
		}
		if len(s.Commands) > 0 {
			p.printf("%s\n", p.dim(p.msg("commands")))
			for _, c := range s.Commands {
				run, err := expand(c.Run, placeholders{})
				if err != nil {
					run = c.Run
				}
				p.command(run)
			}
		}
		if len(s.Checks) > 0 {
			p.printf("%s\n", p.dim(p.msg("checks")))
			for j := range s.Checks {
				c := &s.Checks[j]
				p.printf(" • %s %s\n", pad(c.Title.In(lang), titleColumn), p.dim(p.msg("check")+" "+c.Subject()))
			}
		}
	}
}
