"""The calibration world: shapes drawn as a spec says, with known, seeded mistakes (drawn by the `shapes`
checkpoint, sdeval.generate.shapes).

Every image's truth is known, so a metric or judge can be checked against it offline, on the CPU: does it move
the right way, and by how much, when a known defect is injected?

- `world`: vocabulary (classes circle, square, triangle, cross; GenEval's ten colours), mistake rates,
  degradations, the checkpoint's options.
- `render`: `render(spec, seed, size, mistakes, degrade, background)` -> image + truth (objects, mistake).
- `detect`: `detect_shapes(image)` -> detections with class, colour and box; exact on this world from 128 px,
  and robust to shapes drawn by other code (any plain background, anti-aliasing, JPEG q75, slight noise).

In a generation config:

    checkpoints:
      - {name: shapes-clean, path: shapes}
      - name: shapes-colour30
        path: shapes
        options:
          mistakes: {colors: 0.3, counting: 0.2}   # per GenEval category, rates in [0, 1]; default 0
          blur: 0          # Gaussian blur radius, px
          noise: 0         # additive Gaussian noise, sigma in 8-bit levels
          jpeg: null       # JPEG round trip at this quality (1..95)
          background: grey # or [r, g, b], far enough from every palette colour

The options are part of the checkpoint's identity (its `sha256`, in every image's metadata) and of the config
hash. Image size comes from the settings' width and height (default 256 x 256).
"""
