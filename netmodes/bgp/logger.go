package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// logger adapts GoBGP's logger interface to slog.
type logger struct {
	log   *slog.Logger
	level atomic.Uint32 // gobgplog.LogLevel; 0 (panic) until SetLevel, so start at info
	set   atomic.Bool
}

func (l *logger) emit(level slog.Level, want gobgplog.LogLevel, msg string, fields gobgplog.Fields) {
	if l.GetLevel() < want {
		return
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		attrs = append(attrs, k, v)
	}
	l.log.Log(context.Background(), level, msg, attrs...)
}

// Panic implements gobgplog.Logger: GoBGP calls it on its own bugs.
func (l *logger) Panic(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, gobgplog.PanicLevel, msg, fields)
	panic(fmt.Sprintf("gobgp: %s %v", msg, fields))
}

// Fatal implements gobgplog.Logger: GoBGP calls it on its own bugs.
func (l *logger) Fatal(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, gobgplog.FatalLevel, msg, fields)
	panic(fmt.Sprintf("gobgp: %s %v", msg, fields))
}

// Error implements gobgplog.Logger.
func (l *logger) Error(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, gobgplog.ErrorLevel, msg, fields)
}

// Warn implements gobgplog.Logger.
func (l *logger) Warn(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelWarn, gobgplog.WarnLevel, msg, fields)
}

// Info implements gobgplog.Logger.
func (l *logger) Info(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelInfo, gobgplog.InfoLevel, msg, fields)
}

// Debug implements gobgplog.Logger.
func (l *logger) Debug(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelDebug, gobgplog.DebugLevel, msg, fields)
}

// SetLevel implements gobgplog.Logger.
func (l *logger) SetLevel(level gobgplog.LogLevel) {
	l.level.Store(uint32(level))
	l.set.Store(true)
}

// GetLevel implements gobgplog.Logger: info unless set.
func (l *logger) GetLevel() gobgplog.LogLevel {
	if !l.set.Load() {
		return gobgplog.InfoLevel
	}
	return gobgplog.LogLevel(l.level.Load())
}
