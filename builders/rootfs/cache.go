package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/conpaas/cps/plan"
)

// keepTrees is how many cached trees stay in the cache directory.
const keepTrees = 4

// cachedBootstrap is Bootstrap with a tree cache, like mkosi's incremental
// mode: the bootstrapped tree is kept as a tar in CacheDir/../trees/NAME, keyed by
// everything that shapes it (the mmdebstrap command line with the package
// list and provisioner scripts, the files provisioners copy in, the
// SOURCE_DATE_EPOCH) and by the archive's current InRelease, so a point
// release or security update in the archive makes a new tree. A warm
// rebuild unpacks the tar instead of installing packages again.
func cachedBootstrap(ctx context.Context, o Options, img *plan.Image, dir string, extra []string, epoch int64, early []File) error {
	cacheDir := img.Distribution.CacheDir
	ui := o.UI
	if cacheDir == "" || o.NoTreeCache {
		return bootstrap(ctx, ui, img, dir, extra, epoch, early)
	}
	key, err := treeKey(ctx, img, extra, epoch, early)
	if err != nil {
		ui.Logf("rootfs: no tree cache (%v)", err)
		return bootstrap(ctx, ui, img, dir, extra, epoch, early)
	}
	// Beside the package cache, never inside it: mmdebstrap copies the
	// package cache into the tree and back.
	trees := filepath.Join(filepath.Dir(filepath.Clean(cacheDir)), "trees", filepath.Base(filepath.Clean(cacheDir)))
	tarPath := filepath.Join(trees, key+".tar")
	if _, err := os.Stat(tarPath); err == nil {
		ui.Logf("rootfs: unpacking the cached tree %s", filepath.Base(tarPath))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := runTar(ctx, "-xpf", tarPath, "-C", dir); err == nil {
			now := time.Now()
			os.Chtimes(tarPath, now, now) // recently used
			return nil
		} else {
			ui.Logf("rootfs: cached tree unusable (%v); bootstrapping", err)
			os.Remove(tarPath)
			os.RemoveAll(dir)
		}
	}
	if err := bootstrap(ctx, ui, img, dir, extra, epoch, early); err != nil {
		return err
	}
	if err := os.MkdirAll(trees, 0o755); err != nil {
		return nil // the cache is an optimisation
	}
	tmp := tarPath + ".tmp"
	if err := runTar(ctx, "-cpf", tmp, "-C", dir, "."); err != nil {
		os.Remove(tmp)
		ui.Logf("rootfs: could not cache the tree: %v", err)
		return nil
	}
	if err := os.Rename(tmp, tarPath); err != nil {
		os.Remove(tmp)
		return nil
	}
	prune(trees)
	return nil
}

// runTar runs GNU tar keeping owners as numbers, xattrs (file
// capabilities) and hard links.
func runTar(ctx context.Context, args ...string) error {
	full := append([]string{"--numeric-owner", "--xattrs", "--xattrs-include=*"}, args...)
	cmd := exec.CommandContext(ctx, "tar", full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tar %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// treeKey hashes what determines the tree.
func treeKey(ctx context.Context, img *plan.Image, extra []string, epoch int64, early []File) (string, error) {
	h := sha256.New()
	args, err := bootstrapArgs(img, "/TREE", img.Distribution.CacheDir, extra, early...)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "args %q\nepoch %d\narch %s\n", args, epoch, img.Arch)
	for _, p := range img.Provisioners {
		if p.Type != "file" || p.Source == "" {
			continue
		}
		if p.Catalogue != "" {
			// By content: the file's name is a temporary one.
			b, err := os.ReadFile(p.Catalogue)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "catalogue %s %q\n", p.Destination, b)
		}
		err := filepath.Walk(p.Source, func(path string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "file %s %o\n", path, info.Mode())
			if info.Mode().IsRegular() {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				io.Copy(h, f)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	rel, err := inRelease(ctx, img)
	if err != nil {
		return "", err
	}
	h.Write(rel)
	return fmt.Sprintf("%x", h.Sum(nil))[:32], nil
}

// inRelease fetches the suite's signed Release file, whose content changes
// whenever the archive does.
func inRelease(ctx context.Context, img *plan.Image) ([]byte, error) {
	mirror := strings.TrimRight(orDefault(img.Distribution.Mirror, "http://deb.debian.org/debian"), "/")
	url := mirror + "/dists/" + orDefault(img.Distribution.Suite, "bookworm") + "/InRelease"
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 4<<20))
}

// prune keeps the most recently used trees.
func prune(dir string) {
	ms, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	if len(ms) <= keepTrees {
		return
	}
	type e struct {
		p string
		t time.Time
	}
	var es []e
	for _, m := range ms {
		if st, err := os.Stat(m); err == nil {
			es = append(es, e{m, st.ModTime()})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].t.After(es[j].t) })
	for _, x := range es[keepTrees:] {
		os.Remove(x.p)
	}
}
