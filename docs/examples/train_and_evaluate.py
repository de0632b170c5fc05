"""Fine-tune a Stable Diffusion UNet with accelerate, evaluate it every N steps with sdeval's Evaluator, log the
numbers to TensorBoard, and save diffusers checkpoints that `sdeval bench` evaluates afterwards as a series.

    python docs/examples/train_and_evaluate.py --out train-out              # tiny random model, CPU, ~1 minute
    python docs/examples/train_and_evaluate.py --pretrained stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --images my-photos/ --steps 2000 --eval-every 500 --size 512 --out train-out   # the real thing, on a GPU

Then `tensorboard --logdir train-out/tensorboard` shows FID against step, and `sdeval bench` with
`checkpoints: {glob: "train-out/checkpoint-*", base: PRETRAINED}` (docs/training.md) evaluates every saved
checkpoint on a full prompt suite, with intervals, and picks the one to ship.

What the loop does is diffusers' train_text_to_image.py, cut to its core: encode images to latents, add noise at a
random timestep, predict it, MSE loss. The evaluation is what sdeval adds: a fixed set of prompts and seeds,
generated with the current UNet and scored in memory (no image is written), so the numbers of two steps differ by
what the model learned, not by which prompts or seeds were drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def training_images(folder: Path | None, size: int, out: Path) -> tuple[list[Image.Image], list[str], Path]:
    """The images to fine-tune on, their captions and the folder FID compares with. Without `--images`: eight
    coloured squares made here (a stand-in for a user's photos), written to OUT/data."""
    if folder is not None:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        captions = [(p.with_suffix(".txt").read_text().strip() if p.with_suffix(".txt").is_file() else p.stem)
                    for p in paths]  # fmt: skip
        return [Image.open(p).convert("RGB").resize((size, size)) for p in paths], captions, folder
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    colours = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
    images, captions = [], []
    rng = np.random.default_rng(0)
    for i in range(8):
        name, rgb = list(colours.items())[i % len(colours)]
        pixels = np.full((size, size, 3), 245, dtype=np.uint8)
        x, y = rng.integers(0, size // 2, size=2)
        pixels[y : y + size // 2, x : x + size // 2] = rgb
        image = Image.fromarray(pixels)
        image.save(data / f"{i:02d}.png")
        images.append(image)
        captions.append(f"a {name} square")
    return images, captions, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default=None, help="diffusers folder or hub id [default: sdeval's tiny-random]")
    parser.add_argument("--images", type=Path, default=None, help="training images (captions in NAME.txt)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--size", type=int, default=32, help="training and evaluation image size")
    parser.add_argument("--eval-steps", type=int, default=2, help="denoising steps of the evaluation images")
    parser.add_argument("--inception-weights", default=None, help="Inception weights file [default: standard]")
    args = parser.parse_args()

    import warnings

    import diffusers
    from accelerate import Accelerator
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline

    diffusers.utils.logging.set_verbosity_error()  # config notes of old scheduler files: not this example's concern
    warnings.filterwarnings("ignore", category=FutureWarning)

    from sdeval import Evaluator
    from sdeval.generate.tiny import tiny_random_path

    pretrained = args.pretrained or str(tiny_random_path())
    accelerator = Accelerator()
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline.from_pretrained(pretrained, safety_checker=None, requires_safety_checker=False)
    vae, text_encoder, tokenizer, unet = pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    unet, optimizer = accelerator.prepare(unet, optimizer)

    images, captions, data = training_images(args.images, args.size, args.out)
    pixels = torch.stack([torch.from_numpy(np.asarray(i)).permute(2, 0, 1).float() / 127.5 - 1 for i in images])
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids  # fmt: skip

    # The evaluation: FID of fixed prompts and seeds against the training images, logged at each step.
    eval_prompts = sorted(set(captions))
    options = {"inception_weights": args.inception_weights} if args.inception_weights else {}
    evaluator = Evaluator(metrics=["fid"], reference=str(data), device="cpu", **options)
    logdir = args.out / "tensorboard"

    def evaluate(step: int) -> None:
        model = accelerator.unwrap_model(unet)
        model.save_pretrained(args.out / f"checkpoint-{step}" / "unet")  # what `sdeval bench` reads afterwards
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        evaluating = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=model,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)  # fmt: skip
        evaluating.set_progress_bar_config(disable=True)
        evaluator.reset()
        for seed in (0, 1):
            generator = [torch.Generator().manual_seed(seed) for _ in eval_prompts]
            out = evaluating(eval_prompts, num_inference_steps=args.eval_steps, height=args.size, width=args.size,
                             generator=generator)  # fmt: skip
            evaluator.update(out.images, eval_prompts, ids=[f"{p}__s{seed}" for p in eval_prompts])
        evaluator.log_to("tensorboard", step=step, logdir=str(logdir), run_name="train")
        if accelerator.is_main_process:
            print(f"step {step}: evaluated, checkpoint saved to {args.out / f'checkpoint-{step}'}")

    for step in range(1, args.steps + 1):
        batch = torch.randperm(len(pixels))[:4]
        with torch.no_grad():
            latents = vae.encode(pixels[batch]).latent_dist.sample() * vae.config.scaling_factor
            hidden = text_encoder(ids[batch])[0]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(batch),))
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps, hidden).sample, noise)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        if step % args.eval_every == 0:
            evaluate(step)


if __name__ == "__main__":
    main()
