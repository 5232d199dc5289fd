# %% [markdown]
# # Quickstart notebook
#
# This notebook runs while the site builds, so every output below is fresh. Download it with the
# button at the top of the page and run it locally: it needs only `vangrad`.
#
# A chain of $k$ sigmoid layers passes at most $0.25^k$ of the gradient:
#
# $$
# \left|\frac{\partial L}{\partial h_0}\right|
# \le 0.25^k \left|\frac{\partial L}{\partial h_k}\right|.
# $$

# %%
from vangrad import gradient_bound, log10_gradient_bound
from vangrad.plotting import plot_gradient_bound

print(gradient_bound(5).tolist())
print(f"{log10_gradient_bound(1000)[0]:.2f}")

# %% [markdown]
# On a log axis the bound is a straight line:

# %%
# alt: On a log axis the bound falls in a straight line: 0.25 at k = 1, 10^-24 at k = 40.
ax = plot_gradient_bound(40)
