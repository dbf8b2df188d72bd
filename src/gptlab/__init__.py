"""gptlab: GPT-1/2/3 from paper to practice."""
