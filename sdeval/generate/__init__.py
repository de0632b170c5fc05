"""Generation stage: diffusers pipelines, work plan, seeding, sharding, resumable writer (`sdeval generate`)."""
