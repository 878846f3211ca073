package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

func runInit(cfg *config, log *slog.Logger) error { return errors.New("init: not implemented yet") }
func runDeadman(cfg *config, w io.Writer) error   { return errors.New("deadman: not implemented yet") }
func runSidecar(ctx context.Context, cfg *config, t tenant, log *slog.Logger) error {
	return errors.New("run: not implemented yet")
}
